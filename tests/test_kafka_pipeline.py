"""Kafka source and sink against a real broker, run in-process: content, keys, headers, bad input, order."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from streamflow import Pipeline
from streamflow.connectors.kafka import KafkaSink, KafkaSource
from streamflow.core.runner import EXIT_OK, Runner

pytestmark = pytest.mark.kafka


async def run_until(pipeline: Pipeline, until: Any) -> Any:
    """Run ``pipeline`` in this loop until the awaitable ``until`` is done; then drain it (SIGTERM path)."""
    runner = Runner(pipeline, handle_signals=False)
    task = asyncio.create_task(runner.run())
    try:
        waited = asyncio.ensure_future(until)
        done, _ = await asyncio.wait({task, waited}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            waited.cancel()
            raise AssertionError(f"pipeline ended early: {task.result().summary()}")
        seen = waited.result()
    finally:
        runner.stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == EXIT_OK, result.summary()
    return seen, result


def ids_of(records: list[Any]) -> list[int]:
    return [orjson.loads(r.value)["id"] for r in records]


async def test_end_to_end_content_keys_and_headers(kafka):
    src, out = await kafka.topic("e2e-in"), await kafka.topic("e2e-out")
    n = 600
    await kafka.produce(src, [
        {"key": f"user-{i % 7}", "value": {"id": i, "n": i * 2}, "partition": i % 3,
         "headers": [("trace", f"t{i}".encode())]}
        for i in range(n)])

    def double(value: dict[str, Any]) -> dict[str, Any]:
        return {"id": value["id"], "n": value["n"], "double": value["n"] * 2}

    source = KafkaSource(bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}")
    sink = KafkaSink(bootstrap_servers=kafka.bootstrap, topic=out, headers={"origin": "e2e"})
    pipeline = (Pipeline("e2e", commit_interval=0.2).source(source)
                .filter(lambda v: v["id"] % 10 != 3)
                .map(double)
                .sink(sink))
    expected = {i for i in range(n) if i % 10 != 3}

    async def output_then_state() -> list[Any]:
        records = await kafka.consume(out, lambda recs: set(ids_of(recs)) >= expected, what="e2e output")
        assert source.ready and sink.ready
        assert {(tp.topic, tp.partition): lag for tp, lag in source.lag().items()} == {
            (src, p): 0 for p in range(3)}  # caught up with every partition
        return records

    records, result = await run_until(pipeline, output_then_state())
    assert not source.ready and not sink.ready  # closed

    by_id = {orjson.loads(r.value)["id"]: r for r in records}
    assert set(by_id) == expected                       # every id, and nothing filtered out
    assert len(records) == len(expected)                # no duplicates
    for i, r in by_id.items():
        assert orjson.loads(r.value) == {"id": i, "n": i * 2, "double": i * 4}
        assert r.key == f"user-{i % 7}".encode()
        assert list(r.headers) == [("trace", f"t{i}".encode()), ("origin", b"e2e")]
    assert result.events_in == n
    committed = await kafka.committed(f"g-{src}", src)
    assert committed == {p: n // 3 for p in range(3)}  # drained and committed on stop


async def test_key_field_topic_fn_and_raw_values(kafka):
    src, even, odd = await kafka.topic("route-in", 2), await kafka.topic("even"), await kafka.topic("odd")
    await kafka.produce(src, [(None, {"id": i, "user": f"u{i % 5}"}, i % 2) for i in range(100)])

    def topic_of(msg: Any) -> str:
        return even if msg.value["id"] % 2 == 0 else odd

    pipeline = (Pipeline("route", commit_interval=0.2)
                .source("kafka", bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}")
                .sink("kafka", bootstrap_servers=kafka.bootstrap, topic_fn=topic_of, key_field="user",
                      compression_type="gzip"))

    async def both() -> tuple[list[Any], list[Any]]:
        return (await kafka.consume(even, lambda r: len(r) >= 50),
                await kafka.consume(odd, lambda r: len(r) >= 50))

    (evens, odds), _ = await run_until(pipeline, both())
    assert sorted(ids_of(evens)) == list(range(0, 100, 2))
    assert sorted(ids_of(odds)) == list(range(1, 100, 2))
    for r in evens + odds:
        assert r.key == f"u{orjson.loads(r.value)['id'] % 5}".encode()


async def test_bad_input_goes_to_the_dead_letter_topic(kafka):
    src, out, dlq = await kafka.topic("bad-in", 2), await kafka.topic("bad-out"), await kafka.topic("dlq")
    good = [{"key": f"k{i}", "value": {"id": i}, "partition": i % 2} for i in range(200)]
    malformed = {"key": "broken", "value": b"{not json", "partition": 1, "headers": [("h", b"1")]}
    poison = {"key": "poison", "value": {"id": -1, "poison": True}, "partition": 0}
    await kafka.produce(src, good[:100] + [malformed, poison] + good[100:150])

    def check(value: dict[str, Any]) -> dict[str, Any]:
        if value.get("poison"):
            raise ValueError("poisoned event")
        return value

    pipeline = (Pipeline("bad", commit_interval=0.2)
                .source("kafka", bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}",
                        on_error="dead_letter")
                .map(check, name="check", on_error="dead_letter")
                .sink("kafka", bootstrap_servers=kafka.bootstrap, topic=out)
                .dead_letter("kafka", bootstrap_servers=kafka.bootstrap, topic=dlq))

    async def scenario() -> tuple[list[Any], list[Any]]:
        dead = await kafka.consume(dlq, lambda r: len(r) >= 2, what="dead letters")
        # the pipeline keeps running: events produced after the bad ones still come through
        await kafka.produce(src, good[150:])
        output = await kafka.consume(out, lambda r: len(r) >= 200, what="good events")
        return dead, output

    (dead, output), result = await run_until(pipeline, scenario())
    assert sorted(ids_of(output)) == list(range(200))
    assert len(dead) == 2
    by_key = {r.key: r for r in dead}
    broken = by_key[b"broken"]
    assert broken.value == b"{not json"                  # the original bytes, untouched
    headers = dict(broken.headers)
    assert headers["h"] == b"1"                           # the event's own headers are kept
    assert headers["streamflow.stage"] == b"kafka"
    assert b"JSONDecodeError" in headers["streamflow.error"]
    assert headers["streamflow.source.topic"] == src.encode()
    assert headers["streamflow.source.partition"] == b"1"
    assert headers["streamflow.source.offset"] == b"50"  # 50 good events were before it in partition 1
    poisoned = by_key[b"poison"]
    assert orjson.loads(poisoned.value) == {"id": -1, "poison": True}
    headers = dict(poisoned.headers)
    assert headers["streamflow.stage"] == b"check"
    assert headers["streamflow.error"] == b"ValueError: poisoned event"
    assert headers["streamflow.source.partition"] == b"0"
    assert headers["streamflow.source.offset"] == b"50"
    assert result.dead_lettered == 2
    committed = await kafka.committed(f"g-{src}", src)
    assert committed == {0: 101, 1: 101}                 # dead-lettered events count as done


async def test_ordered_concurrent_stage_keeps_per_key_order(kafka):
    src, out = await kafka.topic("order-in"), await kafka.topic("order-out")
    n, keys = 3000, 12
    await kafka.produce(src, [(f"k{i % keys}", {"id": i, "key": f"k{i % keys}"}, None) for i in range(n)])
    rng = random.Random(7)

    async def jitter(value: dict[str, Any]) -> dict[str, Any]:
        # completions come back out of order: now and then one event is much slower
        await asyncio.sleep(0.05 if value["id"] % 150 == 0 else rng.random() * 0.002)
        return value

    pipeline = (Pipeline("order", commit_interval=0.2)
                .source("kafka", bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}",
                        batch_size=50)
                .map(jitter, concurrency=16, ordered=True)
                .sink("kafka", bootstrap_servers=kafka.bootstrap, topic=out))
    records, _ = await run_until(pipeline, kafka.consume(out, lambda r: len(r) >= n, what="ordered output"))
    assert sorted(ids_of(records)) == list(range(n))
    per_partition: dict[int, list[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_partition.setdefault(r.partition, []).append(orjson.loads(r.value)["id"])
    for partition, ids in per_partition.items():
        assert ids == sorted(ids), f"output partition {partition} out of order"


async def test_pattern_subscription_reads_every_matching_topic(kafka):
    prefix = f"pat{random.randrange(10**9)}"
    first, second = await kafka.topic(f"{prefix}-a", 1), await kafka.topic(f"{prefix}-b", 2)
    other, out = await kafka.topic("unrelated", 1), await kafka.topic("pat-out")
    await kafka.produce(first, [(None, {"id": i}, 0) for i in range(50)])
    await kafka.produce(second, [(None, {"id": i}, i % 2) for i in range(50, 100)])
    await kafka.produce(other, [(None, {"id": -1}, 0)])
    pipeline = (Pipeline("pattern", commit_interval=0.2)
                .source("kafka", bootstrap_servers=kafka.bootstrap, pattern=f"{prefix}-.*",
                        group_id=f"g-{prefix}")
                .sink("kafka", bootstrap_servers=kafka.bootstrap, topic=out))
    records, _ = await run_until(pipeline, kafka.consume(out, lambda r: len(r) >= 100, what="pattern output"))
    assert sorted(ids_of(records)) == list(range(100))
    assert sum((await kafka.end_offsets(out)).values()) == 100  # nothing from the unrelated topic
