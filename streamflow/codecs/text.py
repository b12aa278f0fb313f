"""json (orjson), text (UTF-8; also registered as ``lines``) and raw (bytes as they are) codecs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ..core.registry import CODECS
from .base import Codec
from .exact_json import dumps_exact, loads_exact, may_hold_big_int


def _default(obj: Any) -> Any:
    """orjson fallback of the batch forms: bytes as text, sets as lists, anything else by its str()."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return str(obj)


#: Only when needed: non-string keys make every `orjson.dumps` ~2x slower.
_ANY_KEYS = orjson.OPT_NON_STR_KEYS
_LINE = orjson.OPT_APPEND_NEWLINE


def json_payload(value: Any, option: int = 0) -> bytes:
    """``value`` as JSON that never fails: non-string keys as strings, unknown types by `_default`,
    integers beyond 64 bits exact (`dumps_exact`)."""
    try:
        return orjson.dumps(value, default=_default, option=option)
    except TypeError:
        try:
            return orjson.dumps(value, default=_default, option=option | _ANY_KEYS)
        except TypeError:  # an integer beyond 64 bits
            return dumps_exact(value, _default, newline=bool(option & _LINE))


def json_decode(data: bytes) -> Any:
    """One JSON payload: orjson, or the standard library where a number may not fit 64 bits."""
    if type(data) is bytes and may_hold_big_int(data):
        return loads_exact(data)
    return orjson.loads(data)


@CODECS.register("json")
class JsonCodec(Codec):
    """JSON (orjson). Blank lines of a stream are skipped; a file or stdout sink writes bytes values as they
    are, sets as lists and other objects JSON has no type for by their ``str()``. Integers beyond 64 bits
    are read and written exactly (`streamflow.codecs.exact_json`)."""

    # ``encode`` (one Kafka record) raises on a value orjson cannot encode; the batch forms do not

    skip_blank = True
    decode = staticmethod(json_decode)

    def decode_many(self, frames: list[bytes]) -> list[Any]:
        if may_hold_big_int(b" ".join(frames)):  # one scan for the batch; then find the frames
            return [json_decode(frame) for frame in frames]
        loads = orjson.loads
        return [loads(frame) for frame in frames]

    #: For bytes consumed at once (copied into a send buffer, then dropped): no exact-size copy. Raises on
    #: an integer beyond 64 bits; the caller then takes the per-value path (`encode`), which does not.
    encode_transient = staticmethod(orjson.dumps)

    def encode(self, value: Any) -> bytes:
        # orjson returns its bytes in a ~4 KiB allocation whatever the length; copying into an
        # exact-size object (~90 ns) keeps a 100-byte event at ~150 bytes while it waits for a
        # broker ack or in a channel, instead of 4 KiB each
        try:
            return b"%b" % orjson.dumps(value)
        except TypeError:  # an integer beyond 64 bits (anything else the standard library refuses too)
            return dumps_exact(value)

    def encode_many(self, values: Sequence[Any]) -> list[bytes]:
        return [v if isinstance(v, bytes) else json_payload(v) for v in values]

    def encode_delimited(self, values: Sequence[Any], delimiter: bytes) -> bytes:
        if delimiter != b"\n":
            return super().encode_delimited(values, delimiter)
        # one orjson call per value, the newline appended by orjson itself
        dumps = orjson.dumps
        try:
            return b"".join([v + b"\n" if isinstance(v, bytes) else dumps(v, default=_default, option=_LINE)
                             for v in values])
        except TypeError:  # a non-string key (or a value nothing encodes): per value, with any keys
            return b"".join([v + b"\n" if isinstance(v, bytes) else json_payload(v, _LINE) for v in values])


@CODECS.register("text")
class TextCodec(Codec):
    """UTF-8 text: a frame decodes to a string. Strings encode as UTF-8 and bytes as they are; other values
    as JSON in a file or stdout sink (by their Python ``str()`` in a Kafka record)."""

    def decode(self, data: bytes) -> Any:
        return data.decode("utf-8")

    def decode_many(self, frames: list[bytes]) -> list[Any]:
        return [frame.decode("utf-8") for frame in frames]

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        return str(value).encode("utf-8")

    def encode_many(self, values: Sequence[Any]) -> list[bytes]:
        return [v if isinstance(v, bytes) else v.encode("utf-8") if isinstance(v, str) else json_payload(v)
                for v in values]


@CODECS.register("lines")
class LinesCodec(TextCodec):
    """The same as ``text`` (the name earlier configs use)."""


@CODECS.register("raw")
class RawCodec(Codec):
    """Bytes as they are: a frame decodes to its bytes. Strings encode as UTF-8, other values as JSON."""

    def decode(self, data: bytes) -> Any:
        return data

    def decode_many(self, frames: list[bytes]) -> list[Any]:
        return list(frames)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        return orjson.dumps(value)

    def encode_many(self, values: Sequence[Any]) -> list[bytes]:
        return [bytes(v) if isinstance(v, (bytes, bytearray, memoryview))
                else v.encode("utf-8") if isinstance(v, str) else json_payload(v) for v in values]
