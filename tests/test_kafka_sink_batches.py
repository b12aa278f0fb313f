"""The Kafka sink's per-partition record batches against a real broker: partitions, order, size errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2
from test_kafka_pipeline import ids_of, run_until

from streamflow import Pipeline

pytestmark = pytest.mark.kafka


async def test_keyed_records_go_where_send_would_put_them_in_order_and_big_ones_to_on_error(kafka):
    src, out = await kafka.topic("sb-in", 1), await kafka.topic("sb-out", 3)
    n = 300
    events = [(None, {"id": i, "user": f"user-{i % 11}"}, 0) for i in range(n)]
    events[150] = (None, {"id": 150, "user": "user-7", "pad": "x" * 5000}, 0)  # > max_request_size
    await kafka.produce(src, events)
    pipeline = (Pipeline("sb", commit_interval=0.2)
                .source("kafka", bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}")
                .sink("kafka", bootstrap_servers=kafka.bootstrap, topic=out, key_field="user",
                      max_request_size=4096, on_error={"policy": "skip"}))
    records, _ = await run_until(pipeline, kafka.consume(out, lambda r: len(r) >= n - 1))
    assert sorted(ids_of(records)) == [i for i in range(n) if i != 150]  # the big one skipped, alone
    by_partition: dict[int, list[int]] = {}
    for r in records:
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3  # DefaultPartitioner's choice
        by_partition.setdefault(r.partition, []).append(orjson.loads(r.value)["id"])
    for ids in by_partition.values():
        assert ids == sorted(ids)  # write order kept within each partition


async def test_keyless_records_of_a_write_share_a_partition(kafka):
    src, out = await kafka.topic("sk-in", 1), await kafka.topic("sk-out", 3)
    n = 400
    await kafka.produce(src, [(None, {"id": i}, 0) for i in range(n)])

    pipeline = (Pipeline("sk", commit_interval=0.2)
                .source("kafka", bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}",
                        batch_size=100)
                .sink("kafka", bootstrap_servers=kafka.bootstrap, topic=out))
    records, _ = await run_until(pipeline, kafka.consume(out, lambda r: len(r) >= n))
    assert sorted(ids_of(records)) == list(range(n))
    by_partition: dict[int, list[int]] = {}
    for r in records:
        assert r.key is None
        by_partition.setdefault(r.partition, []).append(orjson.loads(r.value)["id"])
    assert len(by_partition) > 1  # writes rotate over the partitions
    for ids in by_partition.values():
        assert ids == sorted(ids)
        # one write's records stay together: runs of consecutive ids, each at least one poll long
        runs = sum(1 for a, b in zip(ids, ids[1:], strict=False) if b != a + 1) + 1
        assert runs <= n // 2

def _poison_set(v):
    """Make event 77 unencodable (orjson cannot encode a set)."""
    if v["id"] == 77:
        v["s"] = {1, 2}
    return v

async def _run_with_a_big_and_an_unencodable_event(kafka: Any, name: str, key: Callable[[int], str | None],
                                                  n: int = 300) -> list[Any]:
    """``n`` events keyed by ``key(i)`` through a sink whose requests take 4 KiB: event 150 too large and
    event 77 unencodable (`_poison_set`), both skipped; the output records, after checking the counts."""
    src, out = await kafka.topic(f"{name}-in", 1), await kafka.topic(f"{name}-out", 3)
    events = [(key(i), {"id": i}, 0) for i in range(n)]
    events[150] = (key(150), {"id": 150, "pad": "x" * 5000}, 0)
    await kafka.produce(src, events)
    pipeline = (Pipeline(name, commit_interval=0.2)
                .source("kafka", bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}")
                .map(_poison_set)
                .sink("kafka", bootstrap_servers=kafka.bootstrap, topic=out,
                      max_request_size=4096, on_error={"policy": "skip"}))
    records, result = await run_until(pipeline, kafka.consume(out, lambda r: len(r) >= n - 2))
    assert sorted(ids_of(records)) == [i for i in range(n) if i not in (77, 150)]
    [sink] = [s for s in result.stats if s.kind == "sink"]
    assert (sink.events_out, sink.skipped) == (n - 2, 2)  # out: what the broker acknowledged, no more
    return records


async def test_keyless_big_and_unencodable_go_to_on_error(kafka):
    records = await _run_with_a_big_and_an_unencodable_event(kafka, "ak", lambda i: None)
    by_partition = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(orjson.loads(r.value)["id"])
    for ids in by_partition.values():
        assert ids == sorted(ids)


async def test_own_keys_go_to_their_partition_in_order_and_big_and_unencodable_to_on_error(kafka):
    """Messages keyed by their Kafka key (the sink's keyed fast path, no `Record` made): each on the
    partition `send` would choose, in order, the key kept; a too-large and an unencodable one skipped."""
    records = await _run_with_a_big_and_an_unencodable_event(kafka, "ok", lambda i: f"user-{i % 11}")
    by_partition: dict[int, list[int]] = {}
    for r in records:
        value = orjson.loads(r.value)
        assert r.key == b"user-%d" % (value["id"] % 11)  # the input's key, as bytes
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3  # DefaultPartitioner's choice
        by_partition.setdefault(r.partition, []).append(value["id"])
    for ids in by_partition.values():
        assert ids == sorted(ids)
