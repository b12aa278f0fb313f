"""`ByteBudget` and `RateLimiter`, the HTTP source's bounds, on their own."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.connectors.http_source.config import RateLimit
from streamflow.connectors.http_source.limits import ByteBudget, RateLimiter


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=1, max_size=40), st.integers(100, 250), st.randoms())
def test_budget_never_exceeds_its_limit_and_serves_waiters_in_order(sizes: list[int], limit: int,
                                                                    rnd: random.Random) -> None:
    async def main() -> None:
        budget = ByteBudget(limit)
        granted: list[int] = []
        peak = 0

        async def request(i: int, size: int) -> None:
            nonlocal peak
            assert await budget.reserve(size, timeout=60)
            granted.append(i)
            peak = max(peak, budget.used)
            for _ in range(rnd.randint(0, 3)):
                await asyncio.sleep(0)
            budget.release(size)

        await asyncio.gather(*(request(i, s) for i, s in enumerate(sizes)))
        assert peak <= limit and budget.used == 0
        assert granted == sorted(granted)  # first come, first served: nobody overtakes a waiter

    asyncio.run(main())


async def test_a_waiter_that_times_out_gives_its_turn_to_the_next() -> None:
    budget = ByteBudget(100)
    assert budget.try_reserve(80)
    big = asyncio.create_task(budget.reserve(90, timeout=0.05))    # cannot fit until 80 are released
    small = asyncio.create_task(budget.reserve(20, timeout=5))     # fits, but waits behind `big`
    assert await big is False
    assert await small is True and budget.used == 100
    assert await budget.reserve(101, timeout=5) is False           # larger than the budget: never


def test_rate_limiter_allows_a_burst_then_the_rate_per_client() -> None:
    limiter = RateLimiter(RateLimit(per_second=2, burst=3))
    assert [limiter.acquire("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a", now=0.0) == 0.5           # next token in half a second
    assert limiter.acquire("b", now=0.0) == 0.0           # another client has its own bucket
    assert limiter.acquire("a", now=1.0) == 0.0           # refilled at 2/s
