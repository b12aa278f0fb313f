"""Bounded caches shared by transforms: an LRU with optional TTL, and single-flight calls."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from pydantic import ConfigDict, Field

from ..core.configs import ConfigModel

#: Returned by `LRUCache.get` for a key that is absent or expired.
MISSING: Any = object()


class CacheConfig(ConfigModel):
    """Size and lifetime of a transform's cache."""

    model_config = ConfigDict(extra="forbid")

    max_size: int = Field(10_000, ge=1, description="entries kept; the least recently used is evicted")
    ttl: float | None = Field(None, gt=0, description="seconds an entry stays valid (null: until evicted)")


class LRUCache:
    """A mapping bounded to ``max_size`` entries (least recently used evicted first).

    With ``ttl``, an entry expires ``ttl`` seconds after it was `put` (reads do
    not extend it). ``clock`` is a monotonic time source, replaceable in tests.
    """

    def __init__(self, max_size: int, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self.ttl = ttl
        self.clock = clock
        self._data: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> Any:
        """The value of ``key`` (marking it recently used), or `MISSING`."""
        entry = self._data.get(key)
        if entry is None:
            self.misses += 1
            return MISSING
        if self.ttl is not None and entry[1] <= self.clock():
            del self._data[key]
            self.misses += 1
            return MISSING
        self._data.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``, evicting the least recently used beyond ``max_size``."""
        data = self._data
        expires = self.clock() + self.ttl if self.ttl is not None else 0.0
        data[key] = (value, expires)
        data.move_to_end(key)
        while len(data) > self.max_size:
            data.popitem(last=False)

    def add(self, key: Hashable, value: Any = True) -> bool:
        """Store ``key`` unless it is already present: True if it was new (dedupe's check-and-set)."""
        if self.get(key) is not MISSING:
            return False
        self.put(key, value)
        return True

    def clear(self) -> None:
        self._data.clear()


class SingleFlight:
    """Concurrent calls for the same key share one in-flight call and its result or error."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def do(self, key: Hashable, call: Callable[[], Awaitable[Any]]) -> Any:
        """Await ``call()`` — or the call already running for ``key``."""
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(call())
            self._inflight[key] = fut
            fut.add_done_callback(lambda f: self._forget(key, f))
        # shield: one caller being cancelled does not cancel the call the others wait for
        return await asyncio.shield(fut)

    def _forget(self, key: Hashable, fut: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is fut:
            del self._inflight[key]
        if not fut.cancelled():
            fut.exception()  # retrieved: nobody may be left to await it

    def cancel(self) -> None:
        """Cancel every call in flight (on close)."""
        for fut in list(self._inflight.values()):
            fut.cancel()
        self._inflight.clear()
