"""JSON integers beyond 64 bits, kept exact.

orjson, the fast path of the ``json`` codec, reads an integer outside the
64-bit range as a float (``2**70`` comes back as ``1.1805916207174113e+21``)
and refuses to write one. Rather than change data silently, the ``json``
codec finds the payloads that may hold such a number — a run of 20 or more
digits, one translate-and-search over the bytes — and reads and writes those
with the standard library's `json`, which keeps Python integers exact.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

#: Maps each digit to ``0`` and every other byte to a space: a long integer becomes a run of zeros.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
#: The shortest digit run that may be an integer orjson cannot hold (2**64 has 20 digits).
_LONG_RUN = b"0" * 20


def may_hold_big_int(data: bytes) -> bool:
    """Whether ``data`` has a run of 20 or more digits (then orjson may round an integer in it)."""
    return _LONG_RUN in data.translate(_DIGITS)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def loads_exact(data: bytes | str) -> Any:
    """``data`` decoded by the standard library (integers of any size exact; NaN and Infinity refused,
    as orjson refuses them)."""
    return json.loads(data, parse_constant=_no_constant)


def dumps_exact(value: Any, default: Any = None, newline: bool = False) -> bytes:
    """``value`` as compact JSON by the standard library (integers of any size exact); non-string keys
    become strings, as with orjson's ``OPT_NON_STR_KEYS``."""
    text = json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode() if newline else text.encode()
