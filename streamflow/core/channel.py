"""`Channel`: the bounded, measured queue between two stages."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from .batch import Batch


class Channel:
    """Bounded FIFO of batches between stages (contract 1).

    Full when it holds ``max_batches`` batches, or when adding a batch would
    exceed ``max_events`` events or ``max_bytes`` bytes (`Batch.size`). An
    empty channel always takes one batch, so an oversized batch cannot
    deadlock: it passes alone, and the channel holds at most
    ``max(max_bytes, largest batch)`` bytes. `put` waits while full — that
    wait is the backpressure that slows the source down to the slowest sink.
    `close` marks the end of the stream; `get` then returns None once drained.
    """

    def __init__(self, name: str, max_batches: int = 1, max_events: int = 20_000,
                 max_bytes: int = 16 << 20) -> None:  # the defaults of `settings.channel`
        if max_batches < 1 or max_events < 1 or max_bytes < 1:
            raise ValueError("channel capacities must be >= 1")
        self.name = name
        self.max_batches = max_batches
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._queue: deque[Batch] = deque()
        self._events = 0
        self._bytes = 0
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        # measurements
        self.blocked_seconds = 0.0
        self.peak_batches = 0
        self.peak_events = 0
        self.peak_bytes = 0
        self.batches_through = 0

    @property
    def depth(self) -> int:
        """Batches currently queued."""
        return len(self._queue)

    @property
    def events(self) -> int:
        """Events currently queued."""
        return self._events

    @property
    def bytes(self) -> int:
        """Bytes (estimated by `Batch.size`) currently queued."""
        return self._bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def _full(self, n: int, size: int) -> bool:
        q = self._queue
        return len(q) >= self.max_batches or (bool(q) and (self._events + n > self.max_events
                                                           or self._bytes + size > self.max_bytes))

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def put(self, batch: Batch) -> None:
        """Append ``batch``, waiting while the channel is full."""
        if self._closed:
            raise RuntimeError(f"channel {self.name} is closed")
        n = len(batch.messages)
        size = batch.size()
        if self._full(n, size):
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            try:
                while self._full(n, size):
                    fut = loop.create_future()
                    self._putters.append(fut)
                    await fut
            finally:
                self.blocked_seconds += time.monotonic() - started
        self._queue.append(batch)
        self._events += n
        self._bytes += size
        self.batches_through += 1
        if len(self._queue) > self.peak_batches:
            self.peak_batches = len(self._queue)
        if self._events > self.peak_events:
            self.peak_events = self._events
        if self._bytes > self.peak_bytes:
            self.peak_bytes = self._bytes
        if self._getters:
            self._wake(self._getters)

    async def get(self) -> Batch | None:
        """Next batch, or None once the channel is closed and empty."""
        while not self._queue:
            if self._closed:
                return None
            fut = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            await fut
        return self._take()

    def _take(self) -> Batch:
        batch = self._queue.popleft()
        self._events -= len(batch.messages)
        self._bytes -= batch.nbytes
        if self._putters:
            self._wake(self._putters)
        return batch

    def get_nowait(self) -> Batch | None:
        """Next batch if one is queued, else None (does not wait)."""
        if not self._queue:
            return None
        return self._take()

    def close(self) -> None:
        """No more puts; readers see None after the queued batches."""
        self._closed = True
        self._wake(self._getters)

    def drain(self) -> list[Batch]:
        """Remove and return everything queued (used when aborting)."""
        out = list(self._queue)
        self._queue.clear()
        self._events = self._bytes = 0
        self._wake(self._putters)
        return out

    def __repr__(self) -> str:
        return (f"Channel({self.name}, {self.depth}/{self.max_batches} batches, {self._events} events, "
                f"{self._bytes} bytes)")
