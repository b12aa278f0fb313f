"""Keyed state through a rebalance, against the real broker: the partitions that move take their state along.

Two `streamflow run` processes in one consumer group keep a running total per
account (``state: {total: value}``, changelog in Kafka) while a producer keeps
writing. The second member joins mid-stream (half of the first one's
partitions move to it, with their state) and later leaves mid-stream — with
SIGTERM (drain, commit, leave) or with SIGKILL (its session times out) — and the
survivor restores the partitions it gets back. Afterwards the state, restored
from the changelog as a new member would restore it, must equal the totals
computed directly from the input: every input applied exactly once, whichever
member applied it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamflow.connectors.kafka import KafkaSource
from streamflow.connectors.kafka.security import KafkaConnection
from streamflow.core.stage import StageContext
from streamflow.core.stats import StageStats
from streamflow.state import open_store
from streamflow.state.changelog import Changelog, changelog_topic

pytestmark = pytest.mark.kafka

FUNCTIONS = '''
import os


def running_total(value, state):
    total = state.total.get(0) + value["amount"]
    state.total.set(total)
    return {"id": value["id"], "account": value["account"], "total": total, "pid": os.getpid()}
'''

ACCOUNTS, PARTS = 400, 4


def event(i: int) -> tuple[str, dict[str, int], int]:
    """Input ``i``: (key, value, partition); an account always lives on one partition."""
    account = (i * 7919) % ACCOUNTS
    return f"acct-{account}", {"id": i, "account": account, "amount": (i % 11) - 3}, account % PARTS


def write_pipeline(tmp_path: Path, name: str, backend: str) -> Path:
    (tmp_path / "rebalancefns.py").write_text(FUNCTIONS)
    doc: dict[str, Any] = {
        "name": name,
        "settings": {"commit_interval": 0.3, "shutdown_timeout": 30},
        "source": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topics": ["${IN_TOPIC}"],
                   "group_id": "${GROUP}", "batch_size": 200, "session_timeout_ms": 6000,
                   "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 20_000, "revoke_timeout": 10},
        # rate-limited below the input rate: there is always work in flight when partitions move
        "stages": [{"type": "rate_limit", "rate": 3000},
                   {"type": "map", "fn": "rebalancefns:running_total", "state": {"total": "value"},
                    "state_backend": backend}],
        "sink": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topic": "${OUT_TOPIC}"},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


async def restored_totals(kafka: Any, pipeline: str, tmp_path: Path) -> tuple[dict[int, int], dict[int, int]]:
    """Every account's total and every partition's applied offset, as a restore reads them."""
    changelog = Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap), changelog_topic(pipeline, "total"),
                          PARTS)
    await changelog.start()
    totals: dict[int, int] = {}
    applied: dict[int, int] = {}
    try:
        for p in range(PARTS):
            store = open_store("memory", tmp_path, "total", p)
            await changelog.restore(store)
            totals.update({int(k.decode().removeprefix("acct-")): orjson.loads(v) for k, v in store.items()})
            applied[p] = store.applied
    finally:
        await changelog.stop()
    return totals, applied


def owners(records: list[Any]) -> dict[int, list[int]]:
    """Input partition -> the pids that wrote its outputs, in output order, repeats collapsed."""
    out: dict[int, list[int]] = defaultdict(list)
    for r in records:
        v = orjson.loads(r.value)
        seq = out[v["account"] % PARTS]
        if not seq or seq[-1] != v["pid"]:
            seq.append(v["pid"])
    return dict(out)


def restored_records(log: str) -> int:
    """Changelog records a member restored, from its ``restored …: N records`` log lines."""
    return sum(int(n) for n in re.findall(r"restored total\[\d+\] from \S+: (\d+) records", log))


@pytest.mark.parametrize(("leave", "backend"), [(signal.SIGTERM, "memory"), (signal.SIGKILL, "disk")],
                         ids=["sigterm-memory", "kill9-disk"])
async def test_member_leaves_mid_stream_and_the_survivor_restores_its_state(
        kafka, pipeline_process, tmp_path, leave, backend):
    src, out = await kafka.topic("reb-state-in", PARTS), await kafka.topic("reb-state-out", PARTS)
    pipeline = f"rebalance-{uuid.uuid4().hex[:8]}"
    path = write_pipeline(tmp_path, pipeline, backend)
    env = dict(KAFKA_BOOTSTRAP=kafka.bootstrap, IN_TOPIC=src, OUT_TOPIC=out, GROUP=f"g-{src}")
    a, b = pipeline_process(path, "a", **env), pipeline_process(path, "b", **env)

    produced = 0
    stop = asyncio.Event()

    async def producer() -> None:  # a steady stream above the pipeline's rate: both members work mid-stream
        nonlocal produced
        client = await kafka.producer()
        try:
            while not stop.is_set():
                chunk = range(produced, produced + 500)
                await kafka.produce(src, (event(i) for i in chunk), client)
                produced += len(chunk)
                await asyncio.sleep(0.1)
        finally:
            await client.stop()

    feeding = asyncio.create_task(producer())
    output = await kafka.tail(out)
    try:
        a.start()
        # a has written for every input partition before b joins (else a partition may never be a's first)
        await output.until(lambda r: len(r) >= 3000 and len(owners(r)) == PARTS, what="a's first outputs")
        b.start()  # half of a's partitions move to b, with the state a built for them
        assert b.proc is not None and a.proc is not None
        b_pid, a_pid = b.proc.pid, a.proc.pid
        await output.until(lambda r: sum(orjson.loads(x.value)["pid"] == b_pid for x in r) >= 3000,
                           what="b's outputs")
        if leave == signal.SIGTERM:
            b.signal(signal.SIGTERM)
            assert await b.wait() == 0, b.tail()
        else:
            b.kill()
        # a takes b's partitions back (after b's session times out when it was killed) and goes on
        after = len(output.records)
        await output.until(lambda r: len(r) >= after + 4000, timeout=90, what="a's outputs after b left")
    finally:
        stop.set()
        await feeding
    try:
        records = await output.until(lambda r: len({orjson.loads(x.value)["id"] for x in r}) >= produced,
                                     timeout=120, what="every id")
    finally:
        await output.stop()
    a.signal(signal.SIGTERM)
    assert await a.wait() == 0, a.tail()

    expected: Counter[int] = Counter()
    ends = Counter[int]()
    for i in range(produced):
        _, value, partition = event(i)
        expected[value["account"]] += value["amount"]
        ends[partition] += 1
    totals, applied = await restored_totals(kafka, pipeline, tmp_path)
    moved = owners(records)
    a_log, b_log = a.log.read_text(errors="replace"), b.log.read_text(errors="replace")
    print(f"\nstate through a rebalance ({signal.Signals(leave).name}, {backend}): {produced} inputs, "
          f"{len(records) - produced} replayed outputs, owners by partition {moved}, "
          f"records restored by a {restored_records(a_log)}, by b {restored_records(b_log)}", file=sys.stderr)
    # the partitions really moved a -> b -> a, and each move restored state the other member had built
    assert [seq for seq in moved.values() if seq == [a_pid, b_pid, a_pid]], moved
    assert restored_records(b_log) > 0 and restored_records(a_log) > 0
    assert totals == dict(expected)  # each input applied to the state exactly once
    assert applied == {p: ends[p] - 1 for p in range(PARTS)}
    if leave == signal.SIGTERM:
        # a graceful leave drains and commits before it lets go: nothing is read twice
        assert len(records) == produced


class SlowRestore:
    """A partition listener whose `assigned` outlasts the group's session timeout, as a big restore does."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.assignments: list[list[int]] = []
        self.revocations: list[list[int]] = []

    async def assigned(self, source: object, topic: str, partitions: Any, total: int) -> None:
        self.assignments.append(sorted(partitions))
        await asyncio.sleep(self.seconds)

    async def revoked(self, topic: str, partitions: Any) -> None:
        self.revocations.append(sorted(partitions))


async def test_a_restore_longer_than_the_session_timeout_keeps_the_partitions(kafka):
    """The group coordinator evicts a member that does not heartbeat for ``session_timeout_ms``; a
    restore runs inside the assignment callback, so without heartbeats there a restore longer than
    the session timeout would lose the partitions it restored, restore them again, and loop."""
    src = await kafka.topic("slow-restore", 2)
    await kafka.produce(src, ((None, {"id": i}, i % 2) for i in range(200)))
    source = KafkaSource(bootstrap_servers=kafka.bootstrap, topics=[src], group_id=f"g-{src}",
                         session_timeout_ms=6000, heartbeat_interval_ms=1000, rebalance_timeout_ms=30_000)
    slow = SlowRestore(9)
    source.add_partition_listener(slow)
    await source.open(StageContext("slow-restore", "kafka", StageStats("kafka", "source")))
    ids: set[int] = set()
    try:
        while len(ids) < 200:
            batch = await asyncio.wait_for(source.read(), 60)
            ids |= {m.value["id"] for m in batch.messages}
            batch.ack()
        await asyncio.sleep(3)  # a few heartbeats after the callback: an evicted member learns it here
    finally:
        await source.close()
    # evicted, it would have been revoked and assigned again (and restored again, and evicted again …)
    assert slow.assignments == [[0, 1]] and slow.revocations == [], (slow.assignments, slow.revocations)
