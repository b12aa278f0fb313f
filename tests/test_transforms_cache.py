"""LRUCache and SingleFlight."""

from __future__ import annotations

import asyncio

import pytest

from streamflow.transforms.cache import MISSING, LRUCache, SingleFlight


def test_lru_evicts_least_recently_used() -> None:
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)
    assert c.get("b") is MISSING and c.get("a") == 1 and c.get("c") == 3
    assert len(c) == 2
    assert (c.hits, c.misses) == (3, 1)


def test_ttl_expiry_is_not_extended_by_reads() -> None:
    now = [0.0]
    c = LRUCache(10, ttl=5, clock=lambda: now[0])
    c.put("a", None)  # None is a value, not a miss
    now[0] = 4.9
    assert c.get("a") is None
    now[0] = 5.0
    assert c.get("a") is MISSING and len(c) == 0


def test_add_is_check_and_set() -> None:
    c = LRUCache(10)
    assert c.add("k") is True
    assert c.add("k") is False
    with pytest.raises(ValueError):
        LRUCache(0)


async def test_single_flight_shares_result_and_error() -> None:
    flight = SingleFlight()
    calls: list[str] = []
    gate = asyncio.Event()

    async def load(key: str) -> str:
        calls.append(key)
        await gate.wait()
        if key == "bad":
            raise ValueError(key)
        return key * 2

    tasks = [asyncio.create_task(flight.do(k, lambda k=k: load(k))) for k in ["a", "a", "bad", "bad", "a"]]
    await asyncio.sleep(0)
    assert len(flight) == 2
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == ["a", "bad"]
    assert results[:2] == ["aa", "aa"] and results[4] == "aa"
    assert all(isinstance(r, ValueError) for r in results[2:4])
    assert len(flight) == 0
    assert await flight.do("a", lambda: load("a")) == "aa"  # a new call once the first ended
    assert calls == ["a", "bad", "a"]


async def test_one_caller_cancelled_does_not_cancel_the_others() -> None:
    flight = SingleFlight()
    gate = asyncio.Event()

    async def load() -> int:
        await gate.wait()
        return 1

    first = asyncio.create_task(flight.do("k", load))
    second = asyncio.create_task(flight.do("k", load))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == 1
    with pytest.raises(asyncio.CancelledError):
        await first
