"""Line-delimited formats shared by the file and stdio connectors.

Reading: `LineSplitter` frames a byte stream into lines (a partial trailing
line waits for its newline), a `LineDecoder` turns each line into a value,
and `LineSource` turns a run of lines into a `Batch`, sending lines that fail
to decode to the source's error policy. Writing: a `LineEncoder` turns a
batch of values into one bytes object. Both sides are looked up by format
name in `DECODERS` / `ENCODERS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar

import orjson

from ..codecs.csv import CsvCodec
from ..core.acks import Ack
from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.stage import Source, SourceConfig, StageContext

#: Formats a line source can read.
ReadFormat = Literal["jsonl", "csv", "lines", "raw"]
#: Formats a line sink can write.
WriteFormat = Literal["jsonl", "csv", "lines"]

#: Returned by `LineDecoder.decode` for a line that is not an event (a CSV header, a blank JSON line).
SKIP: Any = object()

#: Bytes read from a file or pipe at a time.
CHUNK_SIZE = 1 << 20


class LineSplitter:
    """Frames chunks of a byte stream into lines, keeping a partial trailing line."""

    __slots__ = ("_partial", "saw_cr")

    def __init__(self) -> None:
        self._partial: list[bytes] = []
        #: Whether any chunk fed so far held a ``\r`` (then lines may end with one).
        self.saw_cr = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines ``chunk`` finishes (without their ``\\n``)."""
        if not self.saw_cr and b"\r" in chunk:
            self.saw_cr = True
        if b"\n" not in chunk:
            if chunk:
                self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial.clear()
        lines = chunk.split(b"\n")
        last = lines.pop()
        if last:
            self._partial.append(last)
        return lines

    def rest(self) -> bytes | None:
        """Take the unterminated trailing line, if any (at end of input)."""
        if not self._partial:
            return None
        rest = b"".join(self._partial)
        self._partial.clear()
        return rest

    @property
    def pending(self) -> int:
        """Bytes held in the partial line."""
        return sum(map(len, self._partial))


# -- decoding ---------------------------------------------------------------

class LineDecoder:
    """Decodes the lines of one stream; `reset` when a new stream (file) starts.

    ``decode`` raises on bad input; a decoder with ``skip_blank`` ignores blank
    lines it cannot decode instead.
    """

    skip_blank: ClassVar[bool] = False
    #: ``decode`` is pure and never returns `SKIP`: a whole batch may be decoded in one pass
    #: (and decoded again line by line when that raises).
    batch_safe: ClassVar[bool] = False

    def __init__(self, fields: Sequence[str] | None = None, header: bool = True) -> None:
        self.fields = fields
        self.header = header

    def decode(self, line: bytes) -> Any:
        raise NotImplementedError

    def reset(self) -> None:
        """A new stream starts (a rotated or truncated file)."""


class JsonLinesDecoder(LineDecoder):
    """One JSON document per line (orjson); blank lines are skipped."""

    skip_blank = True
    batch_safe = True
    decode = staticmethod(orjson.loads)  # type: ignore[assignment]


class TextLinesDecoder(LineDecoder):
    """Each line as a UTF-8 string."""

    batch_safe = True

    def decode(self, line: bytes) -> Any:
        return line.decode("utf-8")


class RawLinesDecoder(LineDecoder):
    """Each line as bytes, unchanged."""

    batch_safe = True

    def decode(self, line: bytes) -> Any:
        return line


class CsvLinesDecoder(LineDecoder):
    """CSV rows as dicts of strings keyed by the header (or ``fields``), else lists of strings.

    With ``header`` the first line of each stream names the columns (``fields``,
    when given, overrides the names); blank lines are skipped.
    """

    def __init__(self, fields: Sequence[str] | None = None, header: bool = True) -> None:
        super().__init__(fields, header)
        self._codec = CsvCodec(fields)
        self._expect_header = header

    def reset(self) -> None:
        self._expect_header = self.header

    def read_header(self, line: bytes) -> None:
        """Take column names from a header line (unless ``fields`` are configured)."""
        self._expect_header = False
        if self.fields is None:
            self._codec.fields = CsvCodec().decode(line.rstrip(b"\r"))

    def decode(self, line: bytes) -> Any:
        if not line or line.isspace():
            return SKIP
        if self._expect_header:
            self.read_header(line)
            return SKIP
        return self._codec.decode(line)


#: Format name -> decoder class (one instance per stream).
DECODERS: dict[str, type[LineDecoder]] = {
    "jsonl": JsonLinesDecoder,
    "lines": TextLinesDecoder,
    "raw": RawLinesDecoder,
    "csv": CsvLinesDecoder,
}


LC = TypeVar("LC", bound=SourceConfig)


class LineSource(Source[LC]):
    """Base of sources that read line-delimited input: decodes lines into a batch.

    Subclasses frame their input with a `LineSplitter` and call `make_batch`.
    """

    decoder: LineDecoder
    errors: ErrorHandler

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)

    def make_decoder(self, fmt: str, fields: Sequence[str] | None = None, header: bool = True) -> LineDecoder:
        return DECODERS[fmt](fields, header)

    async def make_batch(self, lines: list[bytes], first_line: int, topic: str, ack: Ack,
                         cr: bool = True) -> Batch:
        """Decode ``lines`` (numbered from ``first_line + 1``) into a batch holding ``ack``.

        Lines that fail to decode go to the source's error policy with their
        line number as offset and the line as raw bytes. ``cr=False`` promises
        that no line ends with ``\\r`` (the source saw none in its input).

        The common case (a `batch_safe` decoder, no ``\\r``, every line
        decodes) takes one list comprehension; anything else the per-line path.
        """
        if self.decoder.batch_safe and not (cr and any(map(_ends_with_cr, lines))):
            decode = self.decoder.decode
            try:
                values = [decode(line) for line in lines]
            except Exception:  # noqa: BLE001 - blank or bad lines: the per-line path sorts them out
                pass
            else:
                # positional: (value, key, headers, timestamp, topic, partition, offset, raw)
                return Batch([Message(v, None, None, None, topic, 0, n, line)
                              for n, v, line in zip(itertools.count(first_line + 1), values, lines)],
                             [ack])
        return await self._make_batch_per_line(lines, first_line, topic, ack)

    async def _make_batch_per_line(self, lines: list[bytes], first_line: int, topic: str, ack: Ack) -> Batch:
        decode, skip_blank = self.decoder.decode, self.decoder.skip_blank
        msgs: list[Message] = []
        bad: list[tuple[Message, Exception]] = []
        n = first_line
        append = msgs.append
        for line in lines:
            n += 1
            if line.endswith(b"\r"):
                line = line[:-1]
            try:
                value = decode(line)
            except Exception as exc:  # noqa: BLE001 - any decode failure goes to the policy
                if skip_blank and (not line or line.isspace()):
                    continue
                bad.append((Message(line, topic=topic, partition=0, offset=n, raw=line), exc))
                continue
            if value is not SKIP:
                append(Message(value, None, None, None, topic, 0, n, line))
        batch = Batch(msgs, [ack])
        if bad:
            errors = self.errors
            for msg, exc in bad:
                await errors.handle(msg, exc, retry=None, batch=batch)
        return batch


def _ends_with_cr(line: bytes) -> bool:
    return line[-1:] == b"\r"


# -- encoding ---------------------------------------------------------------

def _default(obj: Any) -> Any:
    """orjson fallback: bytes as text, anything else by its str()."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    return str(obj)


_JSON_LINE = orjson.OPT_APPEND_NEWLINE
#: Only when needed: non-string keys make every `orjson.dumps` ~2x slower.
_JSON_LINE_ANY_KEYS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def _json_line(value: Any) -> bytes:
    """``value`` as one JSON line (mappings may have non-string keys)."""
    try:
        return orjson.dumps(value, default=_default, option=_JSON_LINE)
    except TypeError:
        return orjson.dumps(value, default=_default, option=_JSON_LINE_ANY_KEYS)


class LineEncoder:
    """Encodes a batch of values as newline-terminated lines, one bytes object per batch."""

    #: Whether each new file starts with a header line.
    has_header: ClassVar[bool] = False

    def __init__(self, fields: Sequence[str] | None = None, header: bool = True) -> None:
        self.fields = list(fields) if fields is not None else None
        self.header = header

    def encode(self, values: list[Any]) -> bytes:
        raise NotImplementedError

    def header_line(self, first: Any) -> bytes:
        """The header of a new file whose first value is ``first`` (empty: none)."""
        return b""


class JsonLinesEncoder(LineEncoder):
    """One JSON document per line; bytes values are written as they are."""

    def encode(self, values: list[Any]) -> bytes:
        dumps, opts = orjson.dumps, _JSON_LINE
        try:
            return b"".join([
                v + b"\n" if isinstance(v, bytes) else dumps(v, default=_default, option=opts)
                for v in values
            ])
        except TypeError:  # a non-string key (or a value nothing encodes): per value, with any keys
            return b"".join([v + b"\n" if isinstance(v, bytes) else _json_line(v) for v in values])


def _text_line(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value + b"\n"
    if isinstance(value, str):
        return value.encode("utf-8") + b"\n"
    return _json_line(value)


class TextLinesEncoder(LineEncoder):
    """Strings as UTF-8 lines, bytes as they are, other values as JSON."""

    def encode(self, values: list[Any]) -> bytes:
        return b"".join([_text_line(v) for v in values])


class CsvLinesEncoder(LineEncoder):
    """CSV rows; columns from ``fields`` or the keys of the first mapping written."""

    has_header = True

    def __init__(self, fields: Sequence[str] | None = None, header: bool = True) -> None:
        super().__init__(fields, header)
        self._codec = CsvCodec(fields)

    def _columns(self, first: Any) -> list[str] | None:
        if self._codec.fields is None and isinstance(first, dict):
            self._codec.fields = [str(k) for k in first]
        return self._codec.fields

    def header_line(self, first: Any) -> bytes:
        columns = self._columns(first)
        if not self.header or columns is None:
            return b""
        return self._codec.encode_many([columns])

    def encode(self, values: list[Any]) -> bytes:
        if values:
            self._columns(values[0])
        return self._codec.encode_many(values)


#: Format name -> encoder class (one instance per sink).
ENCODERS: dict[str, type[LineEncoder]] = {
    "jsonl": JsonLinesEncoder,
    "lines": TextLinesEncoder,
    "csv": CsvLinesEncoder,
}
