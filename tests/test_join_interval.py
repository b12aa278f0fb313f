"""The interval join against the real broker: orders and payments of one key within [t - 5 s, t + 60 s].

One Kafka source reads both topics; the join tells them apart by topic. The
orders are buffered, the pipeline stops and restarts (the buffer comes back
from its changelog), then the payments arrive: every pair a brute-force model
finds comes out exactly once. Then the watermark moves far ahead: the old
events are expired from the state (the changelog says so) and a payment
behind the watermark goes to the dead-letter topic.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamflow.connectors.kafka.security import KafkaConnection
from streamflow.state import open_store
from streamflow.state.changelog import Changelog, changelog_topic
from streamflow.state.copartition import key_partition

pytestmark = pytest.mark.kafka

PARTS = 2
T0 = 1_700_000_000  # epoch seconds
BEFORE, AFTER = 5, 60
KEYS = [f"k{i}" for i in range(6)]


def write_pipeline(tmp_path: Path, name: str) -> Path:
    doc: dict[str, Any] = {
        "name": name,
        "settings": {"commit_interval": 0.3, "shutdown_timeout": 30},
        "source": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}",
                   "topics": ["${ORDERS}", "${PAYMENTS}"], "group_id": "${GROUP}", "batch_size": 20},
        "stages": [{"type": "interval_join", "name": "paid", "left": "${ORDERS}", "right": "${PAYMENTS}",
                    "before": BEFORE, "after": AFTER, "left_as": "order", "right_as": "payment",
                    "allowed_lateness": 1000, "late": "error", "on_error": "dead_letter",
                    "state_backend": "disk"}],
        "sink": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topic": "${OUT}"},
        "dead_letter": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topic": "${DLQ}"},
    }
    path = tmp_path / "interval.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


def record(key: str, ident: str, ts: float) -> dict[str, Any]:
    return {"key": key, "value": {"id": ident, "ts": ts}, "ts": ts}


async def send(producer: Any, topic: str, records: list[dict[str, Any]]) -> None:
    for r in records:
        await (await producer.send(topic, orjson.dumps(r["value"]), key=r["key"].encode(),
                                   timestamp_ms=int(r["ts"] * 1000)))


async def committed_all(kafka: Any, group: str, topic: str, n: int) -> bool:
    from aiokafka.errors import KafkaError

    try:
        return sum((await kafka.committed(group, topic)).values()) >= n
    except KafkaError:  # the group's coordinator is not known yet
        return False


async def restored_keys(kafka: Any, pipeline: str, state: str, tmp_path: Path) -> set[str]:
    """The keys a restore of ``state`` brings back (every partition)."""
    changelog = Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap), changelog_topic(pipeline, state), PARTS)
    await changelog.start()
    keys: set[str] = set()
    try:
        for p in range(PARTS):
            store = open_store("memory", tmp_path, state, p)
            await changelog.restore(store)
            keys |= {k.decode() for k, _ in store.items()}
    finally:
        await changelog.stop()
    return keys


async def test_pairs_within_the_interval_come_out_once_across_a_restart(kafka, pipeline_process, tmp_path):
    orders, payments = await kafka.topic("orders", PARTS), await kafka.topic("payments", PARTS)
    out, dlq = await kafka.topic("out", 1), await kafka.topic("dlq", 1)
    group, name = f"g-{orders}", f"ij-{uuid.uuid4().hex[:8]}"
    proc = pipeline_process(write_pipeline(tmp_path, name), cwd=tmp_path, KAFKA_BOOTSTRAP=kafka.bootstrap,
                            ORDERS=orders, PAYMENTS=payments, OUT=out, DLQ=dlq, GROUP=group)
    sent_orders = [record(KEYS[i % 6], f"o{i}", T0 + i * 10) for i in range(30)]
    shifts = [-8, -5, -3, 0, 20, 59, 60, 61, 70]
    sent_payments = [record(KEYS[(j * 5) % 6], f"p{j}", T0 + j * 10 + shifts[j % len(shifts)]) for j in range(30)]
    assert {key_partition(k.encode(), PARTS) for k in KEYS} == set(range(PARTS))
    expected = {(o["value"]["id"], p["value"]["id"]) for o in sent_orders for p in sent_payments
                if o["key"] == p["key"] and o["ts"] - BEFORE <= p["ts"] <= o["ts"] + AFTER}
    assert 10 < len(expected) < 30 * 30 / 6

    producer = await kafka.producer()
    try:
        proc.start()
        await send(producer, orders, sent_orders)
        await kafka.wait_for("the orders committed", lambda: committed_all(kafka, group, orders, 30))
        proc.signal(signal.SIGTERM)  # the buffered orders are in the changelog; a restart restores them
        assert await proc.wait() == 0, proc.tail()
        proc.start()
        await send(producer, payments, sent_payments)
        await kafka.consume(out, lambda r: len(r) >= len(expected), what="every pair", timeout=120)

        # far ahead on every partition of both topics: the watermark passes every old event's horizon
        far = T0 + 10_000
        lefts = [record(f"far-left-{p}", f"fl{p}", far) for p in range(20)]
        rights = [record(f"far-right-{p}", f"fr{p}", far) for p in range(20)]
        await send(producer, orders, lefts)
        await send(producer, payments, rights)
        for topic in (orders, payments):
            await kafka.wait_for("the far events committed", lambda t=topic: committed_all(kafka, group, t, 50))
        late = record(KEYS[0], "late", T0 + 15)  # would pair with o0, but it is behind the watermark
        await send(producer, payments, [late])
        [dead] = await kafka.consume(dlq, lambda r: len(r) >= 1, what="the late payment", timeout=120)
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0, proc.tail()
    finally:
        await producer.stop()

    pairs = [orjson.loads(r.value) for r in await kafka.consume(out, lambda r: len(r) >= len(expected))]
    got = [(p["order"]["id"], p["payment"]["id"]) for p in pairs]
    assert sorted(got) == sorted(expected)  # each pair once, nothing else (no far or late pair)
    assert b"LateEvent" in dict(dead.headers)["streamflow.error"]
    # expired: only the far events are left in the state
    assert await restored_keys(kafka, name, "paid-left", tmp_path) == {r["key"] for r in lefts}
    assert await restored_keys(kafka, name, "paid-right", tmp_path) == {r["key"] for r in rights}


async def test_topics_with_other_partition_counts_fail_at_start(kafka, pipeline_process, tmp_path):
    orders, payments = await kafka.topic("orders", PARTS), await kafka.topic("payments", PARTS + 1)
    out = await kafka.topic("out", 1)
    proc = pipeline_process(write_pipeline(tmp_path, f"ij-{uuid.uuid4().hex[:8]}"), cwd=tmp_path,
                            KAFKA_BOOTSTRAP=kafka.bootstrap, ORDERS=orders, PAYMENTS=payments, OUT=out,
                            DLQ=out, GROUP=f"g-{orders}").start()
    assert await proc.wait() != 0
    assert (f"topics '{orders}' ({PARTS} partitions) and '{payments}' ({PARTS + 1} partitions) are not "
            "co-partitioned") in proc.tail()


async def test_two_members_each_get_partition_p_of_both_topics(kafka, pipeline_process, tmp_path):
    # three partitions: round-robin would give one member orders[0], orders[2] and payments[1]
    orders, payments = await kafka.topic("orders", 3), await kafka.topic("payments", 3)
    out, dlq = await kafka.topic("out", 1), await kafka.topic("dlq", 1)
    env = {"KAFKA_BOOTSTRAP": kafka.bootstrap, "ORDERS": orders, "PAYMENTS": payments, "OUT": out, "DLQ": dlq,
           "GROUP": f"g-{orders}"}
    path = write_pipeline(tmp_path, f"ij-{uuid.uuid4().hex[:8]}")
    members = [pipeline_process(path, name=n, cwd=tmp_path, **env).start() for n in ("first", "second")]
    for member in members:  # each holds one partition of both topics (range assignment), its state restored
        await kafka.wait_for(f"{member.log.name} to hold both topics",
                             lambda m=member: f"assigned {orders}[" in m.tail(300) and "restored" in m.tail(300))
    sent_orders = [record(KEYS[i % 6], f"o{i}", T0 + i) for i in range(12)]
    sent_payments = [record(KEYS[i % 6], f"p{i}", T0 + i + 30) for i in range(12)]
    expected = {(o["value"]["id"], p["value"]["id"]) for o in sent_orders for p in sent_payments
                if o["key"] == p["key"] and o["ts"] - BEFORE <= p["ts"] <= o["ts"] + AFTER}
    producer = await kafka.producer()
    try:
        await send(producer, orders, sent_orders)
        await send(producer, payments, sent_payments)
    finally:
        await producer.stop()
    records = await kafka.consume(out, lambda r: len(r) >= len(expected), what="every pair", timeout=120)
    for member in members:
        member.signal(signal.SIGTERM)
        assert await member.wait() == 0, member.tail()
    got = sorted((p["order"]["id"], p["payment"]["id"]) for p in map(orjson.loads, (r.value for r in records)))
    assert got == sorted(expected)
    assert await kafka.end_offsets(dlq) == {0: 0}  # no event met a member without its partner partition
    assigned = [line for m in members for line in m.tail(300).splitlines() if "kafka source kafka: assigned" in line]
    for line in assigned:  # partition p of one topic always comes with partition p of the other
        parts = line.split("assigned ", 1)[1].split(", ")
        assert sorted(x.replace(orders, "T") for x in parts if x.startswith(orders)) == \
            sorted(x.replace(payments, "T") for x in parts if x.startswith(payments)), line
