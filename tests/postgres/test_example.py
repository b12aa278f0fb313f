"""pipelines/postgres_orders.yaml, run with the `streamflow` CLI against a real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import asyncpg
import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError

from tests.postgres.server import PASSWORD, PostgresServer, needs_postgres

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.kafka, needs_postgres]


async def test_postgres_orders_yaml(kafka, pipeline_process, postgres: PostgresServer,
                                    db: asyncpg.Connection, tmp_path: Path) -> None:
    await db.execute((ROOT / "pipelines/data/postgres_orders.sql").read_text())
    await db.executemany("INSERT INTO customers VALUES ($1, $2, $3)",
                         [(f"c{i}", f"Customer {i}", "gold" if i % 2 else "silver") for i in range(10)])
    orders = await kafka.topic("orders")
    events = [{"key": f"c{i % 10}", "partition": i % 3, "value": {
        "order_id": i, "customer": f"c{i % 10}", "product_id": f"p{i % 5}", "quantity": i % 3 + 1,
        "placed_at": f"2024-05-01T12:{i % 60:02d}:00+00:00"}} for i in range(300)]
    events.append({"key": "c1", "partition": 0, "value": {"order_id": 300, "customer": "c1", "product_id": "p1",
                                                          "quantity": 0}})          # CHECK (quantity > 0)
    events.append({"key": "ghost", "partition": 1, "value": {"order_id": 301, "customer": "ghost",
                                                             "product_id": "p1", "quantity": 1}})  # no customer
    events.append({"key": "c7", "partition": 1, "value": {"order_id": 7, "customer": "c7", "product_id": "p9",
                                                          "quantity": 2}})  # order 7 again, after it: upserted
    await kafka.produce(orders, events)

    dead = tmp_path / "dead.jsonl"
    proc = pipeline_process(ROOT / "pipelines/postgres_orders.yaml", cwd=ROOT, KAFKA_BOOTSTRAP=kafka.bootstrap,
                            ORDERS_TOPIC=orders, GROUP_ID=f"g-{orders}", POSTGRES_DSN=postgres.dsn,
                            PGPASSWORD=PASSWORD, DEAD_LETTER_FILE=str(dead)).start()
    for _ in range(1200):   # until every input is committed: written, or dead-lettered
        await asyncio.sleep(0.1)
        try:
            if sum((await kafka.committed(f"g-{orders}", orders)).values()) == len(events):
                break
        except GroupCoordinatorNotAvailableError:  # the group does not exist yet
            continue
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    rows = {r["order_id"]: r for r in await db.fetch("SELECT * FROM orders")}
    assert sorted(rows) == list(range(300))
    assert rows[7]["product_id"] == "p9" and rows[7]["quantity"] == 2   # the later event of order 7 won
    assert rows[11]["customer_name"] == "Customer 1" and rows[11]["customer_tier"] == "gold"
    assert rows[12]["placed_at"].isoformat() == "2024-05-01T12:12:00+00:00"
    dead_letters = {d["stage"]: d for d in map(json.loads, dead.read_text().splitlines())}
    assert sorted(dead_letters) == ["customers", "orders-table"]
    assert "CheckViolation" in dead_letters["orders-table"]["error"]
    assert json.loads(dead_letters["orders-table"]["payload"])["order_id"] == 300   # the original bytes
    assert "nothing found for key 'ghost'" in dead_letters["customers"]["error"]
