"""pipelines/orders_enriched.yaml as its header says: customers and orders sent with `streamflow produce`,
the pipeline run with `streamflow run`, against a real broker.

Orders are enriched with their customer's row; eve has none, so her orders are
dead-lettered; a row updated mid-stream is seen by the orders sent after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_join_table import compacted_topic

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.kafka


def produce(kafka: Any, topic: str, *args: str, stdin: bytes | None = None) -> None:
    """``streamflow produce TOPIC ARGS…`` as the README runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "streamflow.cli", "produce", topic, "--bootstrap", kafka.bootstrap,
                        *args], cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()


async def test_orders_enriched_from_the_customers_table(kafka, pipeline_process):
    customers = await compacted_topic(kafka, "customers")
    orders, out, dead = await kafka.topic("orders"), await kafka.topic("enriched", 1), await kafka.topic("dlq")
    rows = {r["id"]: r for r in map(orjson.loads, (ROOT / "pipelines/data/customers.jsonl").read_bytes().splitlines())}
    produce(kafka, customers, "--file", "pipelines/data/customers.jsonl", "--codec", "json", "--key-field", "id")
    proc = pipeline_process(ROOT / "pipelines/orders_enriched.yaml", cwd=ROOT, KAFKA_BOOTSTRAP=kafka.bootstrap,
                            ORDERS_TOPIC=orders, CUSTOMERS_TOPIC=customers, ENRICHED_TOPIC=out,
                            DEAD_LETTER_TOPIC=dead, GROUP_ID=f"g-{orders}").start()
    template = ["--template", "pipelines/data/orders-template.yaml", "--key-field", "customer", "--count", "200"]
    produce(kafka, orders, *template, "--seed", "1")
    first = [orjson.loads(r.value) for r in await kafka.consume(orders, lambda r: len(r) >= 200)]
    eves = sum(o["customer"] == "eve" for o in first)
    assert 0 < eves < 200
    enriched = await kafka.consume(out, lambda r: len(r) >= 200 - eves, what="the first orders, enriched", timeout=120)
    dlq = await kafka.consume(dead, lambda r: len(r) >= eves, what="eve's orders, dead-lettered", timeout=120)

    # ann moves up a tier: the orders sent after the update carry it
    produce(kafka, customers, "--codec", "json", "--key-field", "id",
            stdin=orjson.dumps({**rows["ann"], "tier": "platinum"}) + b"\n")
    before = await kafka.end_offsets(orders)
    produce(kafka, orders, *template, "--seed", "2")
    second = [orjson.loads(r.value) for r in await kafka.consume(orders, lambda r: len(r) >= 400)
              if r.offset >= before[r.partition]]
    more = 200 - sum(o["customer"] == "eve" for o in second)
    enriched = await kafka.consume(out, lambda r: len(r) >= 200 - eves + more, what="the second orders", timeout=120)
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    values = [orjson.loads(r.value) for r in enriched]  # one partition: the first round's come first
    assert len(values) == 200 - eves + more
    for round_, (sent, got) in enumerate(((first, values[:200 - eves]), (second, values[200 - eves:]))):
        want = []
        for order in sent:
            if order["customer"] != "eve":
                row = rows[order["customer"]]
                if round_ == 1 and order["customer"] == "ann":
                    row = {**row, "tier": "platinum"}
                want.append((order["order_id"], order["customer"], row))
        assert sorted((v["order_id"], v["customer"], v["customer_info"]) for v in got) == sorted(want)
    assert all(b"MissingRow: no row for key 'eve'" in dict(r.headers)["streamflow.error"] for r in dlq)
