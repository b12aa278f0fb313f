"""stdin source and stdout sink: pipelines in a shell pipe (``producer | streamflow run … | consumer``)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading

from ..codecs.config import CodecConfig
from ..codecs.decoding import FramedSource, FramedSourceConfig, frames_within
from ..codecs.encoding import StreamEncoder
from ..core.batch import Batch
from ..core.errors import PipelineFailed
from ..core.registry import SINKS, SOURCES
from ..core.stage import ComponentConfig, Sink, StageContext


class _PipeReader:
    """Chunks of a pipe or socket through the event loop (`loop.connect_read_pipe`)."""

    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport, size: int) -> None:
        self._reader, self._transport, self._size = reader, transport, size

    @classmethod
    async def open(cls, fd: int, size: int) -> _PipeReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=size)
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        return cls(reader, transport, size)

    async def read(self) -> bytes:
        return await self._reader.read(self._size)

    def close(self) -> None:
        self._transport.close()


class _ThreadReader:
    """Chunks of a file or terminal read by a daemon thread (they cannot use `connect_read_pipe`).

    The thread blocks while ``max_chunks`` chunks wait, so it never reads far
    ahead; being a daemon, a read blocked on a terminal never holds up exit.
    """

    def __init__(self, fd: int, size: int, max_chunks: int = 4) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._room = threading.Semaphore(max_chunks)
        self._fd, self._size = os.dup(fd), size
        self._closed = False
        threading.Thread(target=self._run, name="stdin-reader", daemon=True).start()

    def _run(self) -> None:
        try:
            while not self._closed:
                self._room.acquire()
                try:
                    chunk = os.read(self._fd, self._size)
                except OSError:
                    chunk = b""
                self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
                if not chunk:
                    break
        except RuntimeError:  # the loop closed
            pass
        finally:
            os.close(self._fd)

    async def read(self) -> bytes:
        chunk = await self._queue.get()
        self._room.release()
        return chunk

    def close(self) -> None:
        self._closed = True
        self._room.release()


class StdinSourceConfig(FramedSourceConfig):
    """Keys of the stdin source: those of every framed source."""


@SOURCES.register("stdin")
class StdinSource(FramedSource[StdinSourceConfig]):
    """Lines (frames) of standard input as events (topic ``stdin``, offset = line number); ends at EOF.

    A batch holds the lines available when it is read, so a slow producer's
    lines are not held back waiting for a full batch.
    """

    def setup(self) -> None:
        super().setup()
        self._reader: _PipeReader | _ThreadReader | None = None
        self._splitter = self.deframer()
        self._pending: list[bytes] = []
        self._line = 0
        self._eof = False

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        cfg = self.config
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):  # replaced or closed sys.stdin: use fd 0
            fd = 0
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            self._reader = await _PipeReader.open(fd, cfg.chunk_size)
        else:
            self._reader = _ThreadReader(fd, cfg.chunk_size)

    @property
    def ready(self) -> bool:
        return self._reader is not None

    async def read(self) -> Batch | None:
        assert self._reader is not None
        while not self._pending:
            if self._eof:
                return None
            chunk = await self._reader.read()
            if chunk:
                self._pending.extend(self._splitter.feed(chunk))
                continue
            self._eof = True
            rest = self._splitter.rest()
            if rest is not None:
                self._pending.append(rest)
        take = self._pending[:self.config.batch_size]
        if sum(map(len, take)) > self.config.batch_bytes:
            take = take[:frames_within(take, self.config.batch_bytes)]
        del self._pending[:len(take)]
        first = self._line
        self._line += len(take)
        return await self.make_batch(take, first, "stdin", self.tracker.track("stdin", self._line),
                                     self._splitter.saw_cr, bool(self._splitter.oversized))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class StdoutSinkConfig(ComponentConfig, CodecConfig):
    """Keys of the stdout sink: ``codec`` and ``framing``."""


@SINKS.register("stdout")
class StdoutSink(Sink[StdoutSinkConfig]):
    """Writes each batch to standard output as one block (encoded with ``codec``, framed) and flushes it."""

    def setup(self) -> None:
        self.encoder = StreamEncoder(self.config)
        self._header_needed = self.encoder.has_header

    async def write(self, batch: Batch) -> None:
        values = [m.value for m in batch.messages]
        data = self.encoder.encode(values)
        if self._header_needed and values:
            data = self.encoder.header(values[0]) + data
            self._header_needed = False
        try:
            await asyncio.get_running_loop().run_in_executor(None, _write_stdout, data)
        except BrokenPipeError:
            raise PipelineFailed("stdout was closed by its reader") from None


def _write_stdout(data: bytes) -> None:
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        out.write(data.decode("utf-8", "replace"))
        out.flush()
