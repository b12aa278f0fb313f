"""The Kafka sink re-sends on the pipeline's ``settings.sink_retry`` schedule, against a real broker.

The outage is the broker itself stopping (a broker of the test's own): the
sink's deliveries time out (``request_timeout_ms``) and are re-sent until the
broker is back, or until ``sink_retry.max_attempts`` fails the pipeline.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_kafka_pipeline import ids_of

from streamflow import Pipeline
from streamflow.core.runner import EXIT_FAILED, EXIT_OK, Runner

pytestmark = pytest.mark.kafka


def _pipeline(kafka: Any, out: str, retry: dict[str, Any], count: int | None) -> Pipeline:
    """Generated ``{"id": n}`` events (keyless: the sink's fast path) at 2000/s to ``out``."""
    return (Pipeline("retry", sink_retry=retry)
            .source("generator", count=count, rate=2000, batch_size=100, format="object")
            .sink("kafka", bootstrap_servers=kafka.bootstrap, topic=out, request_timeout_ms=1000))


def _sink_retries(runner: Runner) -> int:
    stats = runner.stats.get("kafka")
    return stats.retries if stats is not None else 0


async def test_max_attempts_reached_fails_the_pipeline(own_kafka):
    kafka = own_kafka
    out = await kafka.topic("rf-out", 1)
    runner = Runner(_pipeline(kafka, out, {"backoff": 0.05, "max_backoff": 0.2, "max_attempts": 3}, None),
                    handle_signals=False)
    task = asyncio.create_task(runner.run())
    try:
        await kafka.consume(out, lambda r: len(r) >= 500, what="output before the outage")
        await asyncio.to_thread(kafka.broker.stop)
        result = await asyncio.wait_for(task, 90)
    finally:
        runner.stop()
    assert result.exit_code == EXIT_FAILED, result.summary()
    assert "not delivered after 3 attempts" in result.summary()
    assert "settings.sink_retry.max_attempts reached" in result.summary()
    assert _sink_retries(runner) >= 2  # two re-sends, then the third attempt failed too


async def test_an_outage_is_re_sent_until_the_broker_is_back_and_nothing_is_dropped(own_kafka):
    kafka, n = own_kafka, 20_000
    out = await kafka.topic("rh-out", 3)
    runner = Runner(_pipeline(kafka, out, {"backoff": 0.1, "max_backoff": 0.5}, n), handle_signals=False)
    task = asyncio.create_task(runner.run())
    try:
        await kafka.consume(out, lambda r: len(r) >= 2000, what="output before the outage")
        await asyncio.to_thread(kafka.broker.restart, downtime=4.0)  # 4 request timeouts
        result = await asyncio.wait_for(task, 120)  # the generator ends; the sink flushes everything
    finally:
        runner.stop()
    assert result.exit_code == EXIT_OK, result.summary()
    assert _sink_retries(runner) >= 1  # the sink re-sent: aiokafka alone gave up on those deliveries
    records = await kafka.consume(out, lambda r: len(set(ids_of(r))) >= n, what="every id")
    ids = set(ids_of(records))
    assert len(ids) == n and max(ids) - min(ids) == n - 1
