"""file source: read a framed (by default line-delimited) file once, or follow it as it grows (like ``tail -F``)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Literal, NamedTuple

import aiofiles
import aiofiles.os
import orjson
from pydantic import Field, model_validator

from ..codecs.decoding import FramedSource, FramedSourceConfig, frames_within
from ..codecs.framing import frame_bytes
from ..core.batch import Batch
from ..core.registry import SOURCES
from ..core.stage import StageContext

log = logging.getLogger("streamflow.connectors.file")


def _write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data`` all at once (tmp file, fsync, rename); run in a worker thread."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)  # make the rename itself durable
    except OSError:
        pass
    finally:
        os.close(fd)


class FileSourceConfig(FramedSourceConfig):
    path: str = Field(description="the file to read")
    mode: Literal["read", "follow"] = Field(
        "read", description="read: read once and end; follow: keep reading as the file grows, "
                            "across rotation and truncation")
    poll_interval: float = Field(0.25, gt=0, description="seconds between checks for new data in follow mode")
    checkpoint: str | None = Field(
        None, description="file where the acknowledged position is saved; a restart resumes from it")
    start_at: Literal["beginning", "end"] = Field(
        "beginning", description="where follow mode starts when there is no checkpoint")

    @model_validator(mode="after")
    def _follow_options(self) -> FileSourceConfig:
        if self.start_at == "end" and self.mode != "follow":
            raise ValueError("start_at: end only applies to mode: follow")
        if self.mode == "follow" and not self.make_framing().streaming:
            raise ValueError(f"framing: {self.framing} makes the whole file one event; it cannot be "
                             f"followed (use mode: read)")
        return self


class FilePosition(NamedTuple):
    """Where to resume in a file: its inode, the byte offset and the number of frames (lines) before it."""

    inode: int
    offset: int
    line: int


@SOURCES.register("file")
class FileSource(FramedSource[FileSourceConfig]):
    """Lines (frames) of a file as events: topic = path, partition 0, offset = 1-based line number.

    The ack position of a batch is the byte offset after its last line; with
    ``checkpoint`` the acknowledged position is saved atomically and a restart
    resumes from it (contract 2). In follow mode a rotated file (new inode at
    the path) is read to its end before the new file is read from 0, and a
    truncated file (smaller than what was read) is read again from 0.
    """

    def setup(self) -> None:
        super().setup()
        self._file: Any = None
        self._inode = 0
        self._dev = 0
        self._splitter = self.deframer()
        self._pending: list[bytes] = []
        self._pending_bytes = 0  # input bytes the frames in _pending came from
        self._read_pos = 0      # bytes of the current file taken into the splitter
        self._emit_pos = 0      # byte offset after the last line emitted
        self._emit_line = 0     # lines emitted (and skipped) from the current file
        self._seek_needed = False
        self._finishing = False  # the path now names another file: finish this one first
        self._opened = False

    @property
    def ready(self) -> bool:
        return self._opened

    def check_inputs(self) -> list[tuple[str, str]]:
        # follow mode waits for a missing file; read mode would fail when opened
        if self.config.mode == "read" and not os.path.isfile(self.config.path):
            return [("path", f"no such file: {os.path.abspath(self.config.path)} (the file source reads it "
                             "once; mode: follow waits for it)")]
        return []

    # -- opening ----------------------------------------------------------
    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        cfg = self.config
        saved = await self._load_checkpoint()
        try:
            await self._open_file()
        except FileNotFoundError:
            if cfg.mode == "read":
                raise
            log.info("file source %s: %s does not exist yet; waiting for it", self.name, cfg.path)
            self._opened = True
            return
        start = FilePosition(self._inode, 0, 0)
        if saved is not None:
            start = self._resume_point(saved)
        elif cfg.start_at == "end":
            start = await self._end_point()
        if start.offset:
            await self._skip_to(start)
        self._opened = True

    async def _open_file(self) -> None:
        """Open the file at the path and start reading it from 0."""
        f = await aiofiles.open(self.config.path, "rb")
        st = os.fstat(f.fileno())
        if self._file is not None:
            await self._file.close()
        self._file = f
        self._dev, self._inode = st.st_dev, st.st_ino
        self._splitter = self.deframer()
        self._read_pos = self._emit_pos = self._emit_line = 0
        self._seek_needed = self._finishing = False
        self.start_stream()

    def _resume_point(self, saved: FilePosition) -> FilePosition:
        size = os.fstat(self._file.fileno()).st_size
        if saved.offset > size:
            log.warning("file source %s: %s is shorter (%d bytes) than its checkpoint (%d); "
                        "reading from the start", self.name, self.config.path, size, saved.offset)
            return FilePosition(self._inode, 0, 0)
        if saved.inode != self._inode:
            log.warning("file source %s: %s has another inode than its checkpoint; resuming at "
                        "the saved offset %d", self.name, self.config.path, saved.offset)
        log.info("file source %s: resuming %s at line %d (byte %d)", self.name, self.config.path,
                 saved.line + 1, saved.offset)
        return FilePosition(self._inode, saved.offset, saved.line)

    async def _end_point(self) -> FilePosition:
        """The position after the last complete frame, counting the frames before it."""
        f, size = self._file, self.config.chunk_size
        frames = self.deframer()
        pos = count = 0
        while chunk := await f.read(size):
            count += frames.skip(chunk)
            pos += len(chunk)
        return FilePosition(self._inode, pos - frames.pending, count)

    async def _skip_to(self, start: FilePosition) -> None:
        f = self._file
        if self.codec.header and start.line > 0:  # the header was read before the checkpoint: again
            await f.seek(0)
            header = self.deframer()
            while (chunk := await f.read(self.config.chunk_size)) and not (frames := header.feed(chunk)):
                pass
            if chunk:
                self.read_header(frames[0])
        await f.seek(start.offset)
        self._read_pos = self._emit_pos = start.offset
        self._emit_line = start.line

    # -- reading ----------------------------------------------------------
    async def read(self) -> Batch | None:
        cfg = self.config
        size = cfg.batch_size
        while True:
            if len(self._pending) >= size or self._pending_bytes >= cfg.batch_bytes:
                return await self._emit(size)
            if self._file is None:
                if not await self._try_open():
                    await asyncio.sleep(cfg.poll_interval)
                continue
            if await self._read_chunk():
                continue
            # at the end of the file
            if self._pending:
                return await self._emit(size)
            if cfg.mode == "read" or self._finishing:
                rest = self._splitter.rest()
                if rest is not None:  # an unterminated last line counts
                    self._pending.append(rest)
                    continue
                if cfg.mode == "read":
                    return None
                if not await self._try_open():  # the next file is not there yet
                    await asyncio.sleep(cfg.poll_interval)
                continue
            if await self._replaced_or_truncated():
                self._finishing = True  # read what is left of this file, then reopen
                continue
            await asyncio.sleep(cfg.poll_interval)

    async def _read_chunk(self) -> bool:
        """Read one chunk into the splitter; False at the end of the file."""
        f = self._file
        if self._seek_needed:  # a cancelled read may have moved the file position
            await f.seek(self._read_pos)
        self._seek_needed = True
        chunk = await f.read(self.config.chunk_size)
        self._seek_needed = False
        if not chunk:
            return False
        self._read_pos += len(chunk)
        held = self._splitter.pending
        lines = self._splitter.feed(chunk)
        if lines:
            self._pending.extend(lines)
            self._pending_bytes += held + len(chunk) - self._splitter.pending
        return True

    async def _emit(self, n: int) -> Batch:
        """A batch of the next ``n`` pending frames, or fewer once they hold ``batch_bytes``."""
        if self._pending_bytes >= self.config.batch_bytes:
            n = min(n, frames_within(self._pending, self.config.batch_bytes))
        take = self._pending[:n]
        del self._pending[:n]
        first = self._emit_line
        cut = bool(self._splitter.oversized)
        size = frame_bytes(take) if cut else sum(map(len, take))
        size += self.framing.overhead * len(take)
        self._pending_bytes = max(0, self._pending_bytes - size) if self._pending else 0
        # an unterminated last line has no newline to count: never go past what was read
        end = min(self._emit_pos + size, self._read_pos)
        self._emit_pos = end
        self._emit_line += len(take)
        path = self.config.path
        ack = self.tracker.track(path, FilePosition(self._inode, end, self._emit_line))
        batch = await self.make_batch(take, first, path, ack, self._splitter.saw_cr, cut)
        batch.nbytes = size
        return batch

    async def _try_open(self) -> bool:
        try:
            await self._open_file()
        except FileNotFoundError:
            return False
        log.info("file source %s: reading %s from the start", self.name, self.config.path)
        return True

    async def _replaced_or_truncated(self) -> bool:
        try:
            st = await aiofiles.os.stat(self.config.path)
        except FileNotFoundError:
            return False  # rotated away and not recreated yet: keep watching the old file
        if (st.st_dev, st.st_ino) != (self._dev, self._inode):
            log.info("file source %s: %s was rotated; finishing the old file", self.name, self.config.path)
            return True
        if st.st_size < self._read_pos:
            log.info("file source %s: %s was truncated; reading it from the start", self.name,
                     self.config.path)
            return True
        return False

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
            self._file = None

    # -- checkpoints ------------------------------------------------------
    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        target = self.config.checkpoint
        pos = positions.get(self.config.path)
        if target is None or pos is None:
            return
        data = orjson.dumps({"path": self.config.path, "inode": pos.inode, "offset": pos.offset,
                             "line": pos.line})
        await asyncio.to_thread(_write_atomic, target, data)

    async def _load_checkpoint(self) -> FilePosition | None:
        target = self.config.checkpoint
        if target is None:
            return None
        try:
            async with aiofiles.open(target, "rb") as f:
                data = orjson.loads(await f.read())
        except FileNotFoundError:
            return None
        if data.get("path") != self.config.path:
            log.warning("file source %s: checkpoint %s is for %s, not %s; ignoring it", self.name,
                        target, data.get("path"), self.config.path)
            return None
        return FilePosition(int(data["inode"]), int(data["offset"]), int(data["line"]))
