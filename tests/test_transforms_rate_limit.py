"""rate_limit: a token bucket per batch that waits and never drops."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from streamflow import Batch, Message, Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.transforms.rate_limit import RateLimit


def fake_time(limiter: RateLimit) -> list[float]:
    """Replace the limiter's clock and sleep by a fake clock that only sleeping advances."""
    now = [1000.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 9))
        now[0] += seconds

    limiter.clock = lambda: now[0]
    limiter.sleep = sleep
    return sleeps


def run(limiter: RateLimit, values: list[Any], batch_size: int) -> tuple[MemorySink, MemorySource]:
    source = MemorySource(values=values, batch_size=batch_size)
    sink = MemorySink()
    result = Pipeline("t").source(source).transform(limiter).sink(sink).run(handle_signals=False)
    assert result.exit_code == 0
    return sink, source


def test_waits_for_the_tokens_of_each_batch() -> None:
    limiter = RateLimit(rate=10, per=1)
    sleeps = fake_time(limiter)
    sink, source = run(limiter, list(range(30)), batch_size=5)
    # a full bucket of 10 passes the first two batches; then 5 tokens take 0.5s each batch
    assert sleeps == [0.5, 0.5, 0.5, 0.5]
    assert sink.values == list(range(30))
    assert source.committed == {0: 30}


def test_burst_and_period() -> None:
    limiter = RateLimit(rate=1, per=0.1, burst=5)  # 10 events/s, bucket of 5
    sleeps = fake_time(limiter)
    sink, _ = run(limiter, list(range(30)), batch_size=10)
    # batches bigger than the bucket wait for their whole deficit
    assert sleeps == [0.5, 1.0, 1.0]
    assert sink.values == list(range(30))


def test_idle_time_refills_the_bucket_up_to_its_size() -> None:
    limiter = RateLimit(rate=4, per=1)
    sleeps = fake_time(limiter)

    async def scenario() -> list[float]:
        for _ in range(2):  # 8 events: the 4 in the bucket, then a 1s wait
            await limiter.process(Batch([Message(i) for i in range(4)]))
        limiter.clock = lambda: 10_000.0  # a long idle spell refills 4 tokens, not more
        await limiter.process(Batch([Message(i) for i in range(6)]))
        return sleeps

    assert asyncio.run(scenario()) == [1.0, 0.5]


def test_real_clock_passes_everything_in_order() -> None:
    sink, source = run(RateLimit(rate=5000), list(range(300)), batch_size=50)
    assert sink.values == list(range(300))
    assert source.committed == {0: 300}


@pytest.mark.parametrize("options", [{}, {"rate": 0}, {"rate": 1, "per": 0}, {"rate": 1, "burst": 0},
                                     {"rate": 1, "on_error": "skip"}])
def test_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RateLimit(**options)
