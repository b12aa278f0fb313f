"""json (orjson), text (UTF-8; also registered as ``lines``) and raw (bytes as they are) codecs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ..core.registry import CODECS
from .base import Codec


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
    """``value`` as JSON that never fails: non-string keys as strings, unknown types by `_default`."""
    try:
        return orjson.dumps(value, default=_default, option=option)
    except TypeError:
        return orjson.dumps(value, default=_default, option=option | _ANY_KEYS)


@CODECS.register("json")
class JsonCodec(Codec):
    """JSON (orjson). Blank lines of a stream are skipped; a file or stdout sink writes bytes values as they
    are, sets as lists and other objects JSON has no type for by their ``str()``."""

    # ``encode`` (one Kafka record) raises on a value orjson cannot encode; the batch forms do not

    skip_blank = True
    #: orjson's own function: no Python frame per decoded payload
    decode = staticmethod(orjson.loads)  # type: ignore[assignment]
    #: For bytes consumed at once (copied into a send buffer, then dropped): no exact-size copy.
    encode_transient = staticmethod(orjson.dumps)

    def encode(self, value: Any) -> bytes:
        # orjson returns its bytes in a ~4 KiB allocation whatever the length; copying into an
        # exact-size object (~90 ns) keeps a 100-byte event at ~150 bytes while it waits for a
        # broker ack or in a channel, instead of 4 KiB each
        return b"%b" % orjson.dumps(value)

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
