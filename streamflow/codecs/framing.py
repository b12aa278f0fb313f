"""Framings: where one payload ends in a byte stream, and how payloads are joined into one.

A framing composes with a codec (`streamflow.codecs.base.Codec`) the way
Vector's ``framing`` composes with its ``codec``: a stream source splits its
input into frames with the framing's `Deframer` and decodes each frame with
the codec; a stream sink encodes values with the codec and joins them with
the framing. Files, stdin and stdout use ``newline``; a Kafka record or an
HTTP body is one message already (``whole``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

from ..core.registry import FRAMINGS
from .base import Codec, registered_in

#: Bytes read from a file or pipe at a time.
CHUNK_SIZE = 1 << 20
#: Largest frame a length prefix may announce (a larger one means the input is not length-delimited).
MAX_FRAME = 64 << 20


class FramingError(ValueError):
    """The input does not follow its framing; the stream cannot be read on."""


class Incomplete(bytes):
    """The bytes of a frame the input ended in the middle of: they go to the source's ``on_error``."""


#: Bytes of an oversized frame kept for its error record.
OVERSIZED_HEAD = 64 << 10


class Oversized(bytes):
    """The first `OVERSIZED_HEAD` bytes of a frame longer than the source's ``max_frame_bytes``;
    ``size`` is the frame's whole length. It goes to the source's ``on_error``."""

    size: int = 0


def frame_bytes(frames: Sequence[bytes]) -> int:
    """The input bytes ``frames`` came from (an `Oversized` frame counts its whole ``size``)."""
    return sum(map(len, frames)) + sum([f.size - len(f) for f in frames if type(f) is Oversized])


class Deframer(ABC):
    """Splits the chunks of one byte stream into frames, keeping an unfinished frame for the next chunk."""

    __slots__ = ()
    #: Frames may end with a ``\\r`` to drop (the newline framing of CRLF input).
    saw_cr: bool = False
    #: `Oversized` frames produced so far.
    oversized: int = 0

    @abstractmethod
    def feed(self, chunk: bytes) -> list[bytes]:
        """The frames ``chunk`` completes."""

    @abstractmethod
    def rest(self) -> bytes | None:
        """Take what is left at the end of the input: a last frame, `Incomplete` bytes, or None."""

    def skip(self, chunk: bytes) -> int:
        """Like `feed`, for input that is passed over: only the number of frames completed."""
        return len(self.feed(chunk))

    @property
    @abstractmethod
    def pending(self) -> int:
        """Bytes held for the next frame."""


class Framing(ABC):
    """How payloads are delimited in a byte stream. Stateless; `deframer` makes the per-stream state."""

    type_name: ClassVar[str] = "framing"
    #: The registry kind (`FRAMINGS`): a ``module:Class`` framing name must be one.
    kind: ClassVar[str] = "framing"
    #: Bytes a frame takes besides its payload (a delimiter, a length prefix).
    overhead: ClassVar[int] = 0
    #: Frames end before the input does (a source may follow a growing file).
    streaming: ClassVar[bool] = True
    #: A source can split input in this framing (False: it only joins payloads, for sinks).
    readable: ClassVar[bool] = True
    #: The bytes every frame ends with, if any (a sink closes a torn last frame with them).
    delimiter: ClassVar[bytes | None] = None

    @abstractmethod
    def deframer(self, max_frame: int = 0) -> Deframer:
        """The state of one input stream being split into frames.

        ``max_frame`` (0: none) bounds the bytes one frame may hold while it is
        read, where the framing supports it (``newline``): longer frames come
        out as `Oversized`."""

    @abstractmethod
    def frame(self, payloads: Sequence[bytes]) -> bytes:
        """``payloads`` framed and joined into one bytes object."""

    def encode(self, codec: Codec, values: Sequence[Any]) -> bytes:
        """``values`` encoded by ``codec`` and framed, as one bytes object (never fails on a value)."""
        return self.frame(codec.encode_many(values))


class LineSplitter(Deframer):
    """Frames chunks of a byte stream into lines, keeping a partial trailing line.

    With ``max_frame``, a line longer than that many bytes is not held whole:
    its first `OVERSIZED_HEAD` bytes come out as an `Oversized` frame (the
    source's ``on_error`` takes it) once its end is found, and the bytes in
    between are counted and dropped, so memory stays bounded by ``max_frame``.
    """

    __slots__ = ("_partial", "saw_cr", "max_frame", "_held", "_cut", "oversized")

    def __init__(self, max_frame: int = 0) -> None:
        self._partial: list[bytes] = []
        #: Whether any chunk fed so far held a ``\r`` (then lines may end with one).
        self.saw_cr = False
        self.max_frame = max_frame
        self._held = 0  # bytes in _partial
        self._cut: Oversized | None = None  # the oversized line being passed over
        #: Oversized frames produced so far.
        self.oversized = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines ``chunk`` finishes (without their ``\\n``)."""
        if not self.saw_cr and b"\r" in chunk:
            self.saw_cr = True
        head: list[bytes] = []
        if self._cut is not None:
            end = chunk.find(b"\n")
            if end < 0:
                self._cut.size += len(chunk)
                return []
            self._cut.size += end
            head.append(self._cut)
            self._cut = None
            chunk = chunk[end + 1:]
        if b"\n" not in chunk:
            if chunk:
                self._hold(chunk)
            return head
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial.clear()
            self._held = 0
        lines = chunk.split(b"\n")
        last = lines.pop()
        if self.max_frame and len(chunk) > self.max_frame:  # only then can a line be too long
            lines = [self._oversized(line, len(line)) if len(line) > self.max_frame else line
                     for line in lines]
        if last:
            self._hold(last)
        return head + lines if head else lines

    def _hold(self, part: bytes) -> None:
        """Keep ``part`` of the next line; past ``max_frame`` bytes, start passing over the line."""
        self._partial.append(part)
        self._held += len(part)
        if self.max_frame and self._held > self.max_frame:
            held = b"".join(self._partial)
            self._partial.clear()
            self._cut = self._oversized(held, self._held)
            self._held = 0

    def _oversized(self, data: bytes, size: int) -> Oversized:
        self.oversized += 1
        frame = Oversized(data[:OVERSIZED_HEAD])
        frame.size = size
        return frame

    def skip(self, chunk: bytes) -> int:
        if (n := chunk.count(b"\n")) == 0:
            self._partial.append(chunk)
            self._held += len(chunk)
            return 0
        self._partial[:] = [chunk[chunk.rindex(b"\n") + 1:]]
        self._held = len(self._partial[0])
        return n

    def rest(self) -> bytes | None:
        """Take the unterminated trailing line, if any (at end of input)."""
        if self._cut is not None:
            cut, self._cut = self._cut, None
            return cut
        if not self._partial:
            return None
        rest = b"".join(self._partial)
        self._partial.clear()
        self._held = 0
        return rest or None

    @property
    def pending(self) -> int:
        return self._held if self._cut is None else self._cut.size


@FRAMINGS.register("newline")
class NewlineFraming(Framing):
    """One frame per line, ending at ``\\n`` (a ``\\r`` before it is dropped); an unterminated last line counts."""

    overhead = 1
    delimiter = b"\n"

    def deframer(self, max_frame: int = 0) -> Deframer:
        return LineSplitter(max_frame)

    def frame(self, payloads: Sequence[bytes]) -> bytes:
        return b"".join([p + b"\n" for p in payloads])

    def encode(self, codec: Codec, values: Sequence[Any]) -> bytes:
        return codec.encode_delimited(values, b"\n")


class LengthSplitter(Deframer):
    """Frames a stream of length-prefixed payloads (4-byte big-endian length, then the payload)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf
        buf += chunk
        frames: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            size = int.from_bytes(buf[pos:pos + 4], "big")
            if size > MAX_FRAME:
                raise FramingError(f"a length prefix announces a frame of {size} bytes (more than "
                                   f"{MAX_FRAME}): the input is not length-delimited")
            stop = pos + 4 + size
            if stop > end:
                break
            frames.append(bytes(buf[pos + 4:stop]))
            pos = stop
        del buf[:pos]
        return frames

    def rest(self) -> bytes | None:
        if not self._buf:
            return None
        rest = Incomplete(self._buf)
        self._buf.clear()
        return rest

    @property
    def pending(self) -> int:
        return len(self._buf)


@FRAMINGS.register("length_delimited")
class LengthDelimitedFraming(Framing):
    """Each frame is its length (4 bytes, big-endian) followed by that many bytes; for binary payloads."""

    overhead = 4

    def deframer(self, max_frame: int = 0) -> Deframer:
        return LengthSplitter()

    def frame(self, payloads: Sequence[bytes]) -> bytes:
        return b"".join([len(p).to_bytes(4, "big") + p for p in payloads])


class WholeSplitter(LineSplitter):
    """Holds the whole input; it is one frame at its end (no ``\r`` is dropped)."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> list[bytes]:
        if chunk:
            self._partial.append(chunk)
            self._held += len(chunk)
        return []

    def skip(self, chunk: bytes) -> int:
        return len(self.feed(chunk))


@FRAMINGS.register("whole")
class WholeFraming(Framing):
    """The whole input is one frame (a file read once, all of stdin); a sink writes payloads back to back."""

    streaming = False

    def deframer(self, max_frame: int = 0) -> Deframer:
        return WholeSplitter()

    def frame(self, payloads: Sequence[bytes]) -> bytes:
        return b"".join(payloads)


@FRAMINGS.register("json_array")
class JsonArrayFraming(Framing):
    """Payloads joined into one JSON array (``[a,b,c]``): how an HTTP sink posts a batch of JSON events.

    Only sinks write it: reading a JSON array is the ``json`` codec's work on a ``whole`` input.
    """

    readable = False
    streaming = False

    def deframer(self, max_frame: int = 0) -> Deframer:
        raise FramingError("json_array framing only joins payloads; read a JSON array with "
                           "`codec: json` and `framing: whole`")

    def frame(self, payloads: Sequence[bytes]) -> bytes:
        return b"[" + b",".join(payloads) + b"]"


def get_framing(name: str) -> Framing:
    """An instance of the framing registered as ``name``."""
    return FRAMINGS.get(name)()


FramingName = Annotated[str, registered_in(FRAMINGS)]
"""A config field naming a registered framing; unknown names are config errors listing the known ones."""
