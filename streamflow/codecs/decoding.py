"""`FramedSource`: the base of sources that read a framed byte stream (a file, stdin).

A subclass reads chunks, splits them into frames with ``self.framing``'s
`Deframer` and hands runs of frames to `FramedSource.make_batch`, which
decodes them with ``self.codec`` into a `Batch`; a frame that fails to decode
goes to the source's ``on_error`` with its frame (line) number as offset and
its bytes as raw (contract 5).
"""

from __future__ import annotations

import itertools
from typing import TypeVar

from pydantic import Field, model_validator

from ..core.acks import Ack
from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.stage import Source, SourceConfig, StageContext
from .base import Codec
from .config import CodecConfig
from .framing import CHUNK_SIZE, Deframer, Framing, FramingError, Incomplete, Oversized


class FramedSourceConfig(SourceConfig, CodecConfig):
    """Keys of every source that reads a framed byte stream."""

    batch_size: int = Field(1000, ge=1, description="frames (lines) per batch at most")
    batch_bytes: int = Field(4 << 20, ge=1, description=(
        "a batch ends once its frames hold this many bytes (it holds at least one frame)"))
    max_frame_bytes: int = Field(64 << 20, ge=1, description=(
        "longest frame (line) read; a longer one goes to `on_error` with its first 64 KiB as payload, "
        "and reading goes on after it (newline framing)"))
    chunk_size: int = Field(CHUNK_SIZE, ge=1, description="bytes read at a time")

    @model_validator(mode="after")
    def _readable(self) -> FramedSourceConfig:
        if not self.make_framing().readable:
            raise ValueError(f"framing {self.framing} can only be written by a sink")
        return self


FC = TypeVar("FC", bound=FramedSourceConfig)


class FramedSource(Source[FC]):
    """Base of sources that read a framed byte stream: decodes runs of frames into batches.

    Subclasses that implement `setup` call ``super().setup()`` first, and
    `start_stream` when a new input begins (a rotated or truncated file).
    """

    codec: Codec
    framing: Framing
    errors: ErrorHandler

    def setup(self) -> None:
        self.codec = self.config.make_codec()
        self.framing = self.config.make_framing()
        self._expect_header = self.codec.header

    def deframer(self) -> Deframer:
        """A deframer for a new input, bounded by ``max_frame_bytes``."""
        return self.framing.deframer(self.config.max_frame_bytes)

    def start_stream(self) -> None:
        """A new input starts: a codec with a header reads it again."""
        self._expect_header = self.codec.header

    def read_header(self, frame: bytes) -> None:
        """Take ``frame`` as the header of the current input (also when resuming past it)."""
        self.codec.read_header(frame)
        self._expect_header = False

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)

    async def make_batch(self, frames: list[bytes], first: int, topic: str, ack: Ack, cr: bool = True,
                         cut: bool = True) -> Batch:
        """Decode ``frames`` (numbered from ``first + 1``) into a batch holding ``ack``.

        ``cr=False`` promises that no frame ends with a ``\\r`` to drop (the
        source saw none in its input, or its framing keeps them); ``cut=False``
        that none is `Oversized` (its deframer made none). The common
        case (a `batch_safe` codec, no header to read, no ``\\r``, every frame
        decodes) is one `Codec.decode_many` call; anything else takes the
        frame-by-frame path.
        """
        if (frames and self.codec.batch_safe and not self._expect_header
                and type(frames[-1]) is not Incomplete and not (cr and any(map(_ends_with_cr, frames)))
                and not (cut and any(type(f) is Oversized for f in frames))):
            try:
                values = self.codec.decode_many(frames)
            except Exception:  # noqa: BLE001 - blank or bad frames: the frame-by-frame path sorts them out
                pass
            else:
                # positional: (value, key, headers, timestamp, topic, partition, offset, raw)
                return Batch([Message(v, None, None, None, topic, 0, n, frame)
                              for n, v, frame in zip(itertools.count(first + 1), values, frames)],
                             [ack])
        return await self._make_batch_per_frame(frames, first, topic, ack, cr)

    async def _make_batch_per_frame(self, frames: list[bytes], first: int, topic: str, ack: Ack,
                                    cr: bool) -> Batch:
        """`make_batch` one frame at a time: drops ``\\r``, skips blanks, reads the header, routes failures."""
        codec = self.codec
        decode, skip_blank = codec.decode, codec.skip_blank
        msgs: list[Message] = []
        bad: list[tuple[Message, Exception]] = []
        append = msgs.append
        blank = 0
        for n, frame in enumerate(frames, first + 1):
            if type(frame) is Incomplete:
                cut = FramingError(f"the input ended {len(frame)} bytes into a frame")
                bad.append((Message(bytes(frame), topic=topic, partition=0, offset=n, raw=bytes(frame)), cut))
                continue
            if type(frame) is Oversized:
                bad.append((Message(bytes(frame), topic=topic, partition=0, offset=n, raw=bytes(frame)),
                            FrameTooLarge(frame.size, self.config.max_frame_bytes)))
                continue
            if cr and frame[-1:] == b"\r":
                frame = frame[:-1]
            if skip_blank and (not frame or frame.isspace()):
                blank += 1
                continue
            if self._expect_header:
                self.read_header(frame)
                continue
            try:
                value = decode(frame)
            except Exception as exc:  # noqa: BLE001 - any decode failure goes to the policy
                bad.append((Message(frame, topic=topic, partition=0, offset=n, raw=frame), exc))
                continue
            append(Message(value, None, None, None, topic, 0, n, frame))
        if blank and self.ctx is not None:
            self.ctx.stats.blank += blank
        batch = Batch(msgs, [ack])
        for msg, error in bad:
            await self.errors.handle(msg, error, retry=None, batch=batch)
        return batch


def frames_within(frames: list[bytes], limit: int) -> int:
    """How many leading ``frames`` a batch of ``limit`` bytes takes (at least one)."""
    total = 0
    for i, frame in enumerate(frames, 1):
        total += len(frame)
        if total >= limit:
            return i
    return len(frames)


class FrameTooLarge(ValueError):
    """A frame (line) longer than the source's ``max_frame_bytes``; its record holds the first 64 KiB."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame of {size} bytes is longer than max_frame_bytes ({limit}); the payload "
                         f"holds its first {min(size, 64 << 10)} bytes")


def _ends_with_cr(frame: bytes) -> bool:
    return frame[-1:] == b"\r"
