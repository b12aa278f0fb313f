"""The stream–table join against the real broker: each order joins the customer row current at its time.

The rule (`streamflow.transforms.join`): before an event is joined, the table
is read ahead, in offset order, through the records stamped at or before the
event's time that were written before it was read; the restore on
assignment reads the table to its end. A model applies exactly that rule to
what the test wrote, and every joined order must carry the row the model says.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamflow.state.copartition import key_partition

pytestmark = pytest.mark.kafka

PARTS = 3
T0 = 1_700_000_000_000  # epoch ms
CUSTOMERS = ["ann", "bob", "cho", "dev", "eve", "fay"]


async def compacted_topic(kafka: Any, hint: str, partitions: int = PARTS) -> str:
    """A fresh topic with ``cleanup.policy=compact``, leaders elected."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"{hint}-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    await kafka._wait_leaders(name, partitions)
    return name


def write_pipeline(tmp_path: Path, **join: Any) -> Path:
    doc: dict[str, Any] = {
        "name": "join-test",
        "settings": {"commit_interval": 0.3, "shutdown_timeout": 30},
        "source": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topics": ["${ORDERS}"],
                   "group_id": "${GROUP}", "batch_size": 50},
        "stages": [{"type": "join", "name": "customers", "table": {"topic": "${CUSTOMERS}"},
                    "on_error": "dead_letter", **join}],
        "sink": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topic": "${OUT}"},
        "dead_letter": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topic": "${DLQ}"},
    }
    path = tmp_path / "join.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


class Model:
    """The join rule applied to what was written: per partition, the table records applied so far."""

    def __init__(self) -> None:
        self.table: dict[int, list[tuple[str, Any, int]]] = {p: [] for p in range(PARTS)}  # written
        self.applied = dict.fromkeys(range(PARTS), 0)  # how many of them the reader applied
        self.expected: dict[int, Any] = {}  # order id -> the row it must carry

    def row(self, key: str, value: Any, ts: int) -> tuple[str, Any, int]:
        self.table[key_partition(key.encode(), PARTS)].append((key, value, ts))
        return key, value, ts

    def restart(self) -> None:
        """The restore on assignment reads every table record written so far."""
        self.applied = {p: len(records) for p, records in self.table.items()}

    def orders(self, ts: int, keys: list[str]) -> list[tuple[str, Any, int]]:
        """Orders of ``keys`` at ``ts``, numbered on from the last one."""
        return [self.order(len(self.expected) + 1, key, ts) for key in keys]

    def order(self, oid: int, key: str, ts: int) -> tuple[str, Any, int]:
        part = key_partition(key.encode(), PARTS)
        records = self.table[part]
        while self.applied[part] < len(records) and records[self.applied[part]][2] <= ts:
            self.applied[part] += 1
        current = None
        for k, v, _ in records[:self.applied[part]]:
            if k == key:
                current = v
        self.expected[oid] = current
        return key, {"id": oid, "customer": key}, ts


async def send(producer: Any, topic: str, records: list[tuple[str, Any, int]]) -> None:
    """Write records one after the other, each acknowledged before the next is sent."""
    for key, value, ts in records:
        payload = None if value is None else orjson.dumps(value)
        await (await producer.send(topic, payload, key=key.encode(), timestamp_ms=ts))


async def test_every_order_joins_the_row_current_at_its_time(kafka, pipeline_process, tmp_path):
    customers = await compacted_topic(kafka, "customers")
    orders, out, dlq = await kafka.topic("orders", PARTS), await kafka.topic("out", 1), await kafka.topic("dlq", 1)
    env = {"KAFKA_BOOTSTRAP": kafka.bootstrap, "ORDERS": orders, "CUSTOMERS": customers, "OUT": out,
           "DLQ": dlq, "GROUP": f"g-{orders}"}
    model, producer = Model(), await kafka.producer()
    orders_at = model.orders

    try:
        # rows at T0, restored before the first order
        await send(producer, customers, [model.row(c, {"tier": "basic", "v": 0}, T0) for c in CUSTOMERS[:5]])
        proc = pipeline_process(write_pipeline(tmp_path, into="customer_row", on_missing="keep",
                                               state_backend="disk"), cwd=tmp_path, **env).start()
        await send(producer, orders, orders_at(T0, CUSTOMERS))
        await kafka.consume(out, lambda r: len(r) >= len(model.expected), what="orders joined once the table is restored", timeout=120)
        for step in range(1, 6):  # updates mid-stream, each followed by orders after it
            t = T0 + step * 10_000
            await send(producer, customers, [model.row(c, {"tier": "gold", "v": step}, t)
                                             for c in CUSTOMERS[step % 2::2]])
            await send(producer, orders, orders_at(t - 1, CUSTOMERS) + orders_at(t, CUSTOMERS)
                       + orders_at(t + 1, CUSTOMERS))
        # an update stamped ahead of the stream: orders before its time do not see it, later ones do
        ahead = T0 + 100_000
        await send(producer, customers, [model.row("ann", {"tier": "platinum", "v": 99}, ahead)])
        await send(producer, orders, orders_at(ahead - 5_000, ["ann", "bob"]) + orders_at(ahead, ["ann"]))
        # a tombstone deletes the row; a row for a new customer appears
        await send(producer, customers, [model.row("bob", None, ahead + 1), model.row("fay", {"v": 7}, ahead + 1)])
        await send(producer, orders, orders_at(ahead + 2, ["bob", "fay", "cho"]))
        await kafka.consume(out, lambda r: len(r) >= len(model.expected), what="joined orders before the restart", timeout=120)
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0, proc.tail()

        # written while it is down: the restore on the restart reads the table to its end, so the backlog's
        # cho orders (stamped ahead + 20) see v55 (stamped ahead + 25): the one exception to the rule
        await send(producer, customers, [model.row("cho", {"tier": "gold", "v": 50}, ahead + 10),
                                         model.row("cho", {"tier": "gold", "v": 55}, ahead + 25)])
        model.restart()
        await send(producer, orders, orders_at(ahead + 20, CUSTOMERS))
        proc.start()
        await kafka.consume(out, lambda r: len(r) >= len(model.expected), what="orders joined after the restore", timeout=120)
        await send(producer, customers, [model.row("dev", {"tier": "gold", "v": 60}, ahead + 30)])
        await send(producer, orders, orders_at(ahead + 30, ["dev", "eve", "cho"]))
        # an order keyed by "ann" written to a partition that is not ann's: not co-partitioned, dead-lettered
        wrong = (key_partition(b"ann", PARTS) + 1) % PARTS
        await (await producer.send(orders, orjson.dumps({"id": 0}), key=b"ann", partition=wrong,
                                   timestamp_ms=ahead + 40))
        records = await kafka.consume(out, lambda r: len(r) >= len(model.expected), what="every joined order", timeout=120)
        [dead] = await kafka.consume(dlq, lambda r: len(r) >= 1, what="the order in the wrong partition", timeout=120)
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0, proc.tail()
    finally:
        await producer.stop()

    joined = {v["id"]: v["customer_row"] for v in (orjson.loads(r.value) for r in records)}
    assert len(joined) == len(model.expected)
    wrong_rows = {i: (joined[i], want) for i, want in model.expected.items() if joined[i] != want}
    assert not wrong_rows, f"orders joined with another row than the rule's: {wrong_rows}"
    assert [joined[i]["v"] for i in (len(joined) - 2, len(joined))] == [60, 55]  # updates around the restart
    assert b"NotCoPartitioned" in dict(dead.headers)["streamflow.error"]
    assert b"belongs in partition" in dict(dead.headers)["streamflow.error"]


async def test_topics_with_other_partition_counts_fail_at_start(kafka, pipeline_process, tmp_path):
    customers = await compacted_topic(kafka, "customers", partitions=2)
    orders, out = await kafka.topic("orders", PARTS), await kafka.topic("out", 1)
    await kafka.produce(orders, [("ann", {"id": 1}, 0)])
    proc = pipeline_process(write_pipeline(tmp_path), cwd=tmp_path, KAFKA_BOOTSTRAP=kafka.bootstrap,
                            ORDERS=orders, CUSTOMERS=customers, OUT=out, DLQ=out, GROUP=f"g-{orders}").start()
    assert await proc.wait() != 0
    log = proc.tail()
    assert f"topics '{orders}' ({PARTS} partitions) and '{customers}' (2 partitions) are not co-partitioned" in log
    assert (await kafka.end_offsets(out)) == {0: 0}  # nothing was joined


async def test_a_member_leaving_hands_its_table_partitions_over(kafka, pipeline_process, tmp_path):
    customers = await compacted_topic(kafka, "customers")
    orders, out, dlq = await kafka.topic("orders", PARTS), await kafka.topic("out", 1), await kafka.topic("dlq", 1)
    env = {"KAFKA_BOOTSTRAP": kafka.bootstrap, "ORDERS": orders, "CUSTOMERS": customers, "OUT": out,
           "DLQ": dlq, "GROUP": f"g-{orders}"}
    path = write_pipeline(tmp_path, into="customer_row", on_missing="keep")
    keys = [f"c{i}" for i in range(9)]
    assert {key_partition(k.encode(), PARTS) for k in keys} == set(range(PARTS))
    model, producer = Model(), await kafka.producer()

    def orders_at(ts: int) -> list[tuple[str, Any, int]]:
        return model.orders(ts, keys)

    try:
        await send(producer, customers, [model.row(c, {"v": 0}, T0) for c in keys])
        first, second = (pipeline_process(path, name=n, cwd=tmp_path, **env).start() for n in ("first", "second"))
        for member in (first, second):  # both hold table partitions before any order
            await kafka.wait_for(f"{member.log.name} to restore", lambda m=member: "restored table" in m.tail(200))
        for step in (1, 2):
            await send(producer, customers, [model.row(c, {"v": step}, T0 + step * 10) for c in keys])
            await send(producer, orders, orders_at(T0 + step * 10 + 1))
            await kafka.consume(out, lambda r: len(r) >= len(model.expected), what=f"orders of step {step}", timeout=120)
        everything = f"assigned {orders}[0], {orders}[1], {orders}[2]"
        before = first.tail(400).count(everything)
        second.signal(signal.SIGTERM)  # its partitions move to the first, which restores their table
        assert await second.wait() == 0, second.tail()
        # the restore reads the table to its end: the next rows are written once it is done
        def restored_all() -> bool:
            log = first.tail(400)
            return log.count(everything) > before and log[log.rfind(everything):].count("restored table") == PARTS

        await kafka.wait_for("the first to take and restore every partition", restored_all)
        for step in (3, 4):
            await send(producer, customers, [model.row(c, {"v": step}, T0 + step * 10) for c in keys])
            await send(producer, orders, orders_at(T0 + step * 10 + 1))
        records = await kafka.consume(out, lambda r: len(r) >= len(model.expected), what="orders after the rebalance", timeout=120)
        first.signal(signal.SIGTERM)
        assert await first.wait() == 0, first.tail()
    finally:
        await producer.stop()

    joined = {v["id"]: v["customer_row"] for v in (orjson.loads(r.value) for r in records)}
    assert joined == model.expected
    assert [joined[i]["v"] for i in sorted(joined)][-9:] == [4] * 9
