"""What bounds the HTTP source: a byte budget for request bodies, a request rate per client.

`ByteBudget` is contract 1 for a webhook: a body's size is reserved *before*
it is read and released when its request is answered, so the bodies held at
once — read, parsed, or in the pipeline — never add up to more than the
budget. `RateLimiter` is a token bucket per client address.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque

from .config import RateLimit


class ByteBudget:
    """Bytes reserved by requests in flight, at most ``limit``; waiters are served first come, first served."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_reserve(self, size: int) -> bool:
        """Reserve ``size`` bytes if they fit now (and nobody waits before us)."""
        if self._waiters or self.used + size > self.limit:
            return False
        self.used += size
        return True

    async def reserve(self, size: int, timeout: float) -> bool:
        """Reserve ``size`` bytes, waiting up to ``timeout`` seconds for room; False if there was none."""
        if size > self.limit:
            return False
        if self.try_reserve(size):
            return True
        entry = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
            return True
        except TimeoutError:
            return entry[1].done() and not entry[1].cancelled()  # granted as the timeout struck
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()

    def release(self, size: int) -> None:
        """Give back ``size`` reserved bytes and let waiters in."""
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            size, fut = self._waiters.popleft()
            if not fut.done():
                self.used += size
                fut.set_result(None)


class RateLimiter:
    """A token bucket per client key (its address); remembers the ``max_clients`` most recent ones."""

    def __init__(self, config: RateLimit, max_clients: int = 10_000) -> None:
        self.rate = config.per_second
        self.burst = float(config.burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)
        self._max = max_clients

    def acquire(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 if allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait
