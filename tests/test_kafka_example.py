"""pipelines/kafka_enrich.yaml, run with the `streamflow` CLI against a real broker."""

from __future__ import annotations

import signal
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.kafka

PRICES = {"p1": 24.90, "p2": 49.00, "p3": 5.50, "p4": 129.00, "p5": 13.20}


async def test_kafka_enrich_yaml(kafka, pipeline_process):
    orders, enriched, dead = (await kafka.topic("orders"), await kafka.topic("enriched"),
                              await kafka.topic("orders-dlq"))
    events = []
    for i in range(300):
        kind = "order" if i % 3 else "view"
        events.append({"key": f"c{i % 11}", "partition": i % 3, "value": {
            "order_id": i, "type": kind, "customer": f"c{i % 11}", "product_id": f"p{i % 5 + 1}",
            "quantity": i % 4 + 1}})
    events.append({"key": "bad", "partition": 0, "value": b"{\"order_id\": "})            # malformed
    events.append({"key": "list", "partition": 2, "value": b"[1,2]"})                     # JSON, no object
    events.append({"key": "c1", "partition": 1, "value": {                                # unknown product
        "order_id": 1000, "type": "order", "customer": "c1", "product_id": "p99", "quantity": 1}})
    await kafka.produce(orders, events)

    proc = pipeline_process(ROOT / "pipelines/kafka_enrich.yaml", cwd=ROOT, KAFKA_BOOTSTRAP=kafka.bootstrap,
                            ORDERS_TOPIC=orders, ENRICHED_TOPIC=enriched, DEAD_LETTER_TOPIC=dead,
                            GROUP_ID=f"g-{orders}").start()
    expected = {i for i in range(300) if i % 3}
    out = await kafka.consume(enriched, lambda r: len(r) >= len(expected), what="enriched orders")
    dlq = await kafka.consume(dead, lambda r: len(r) >= 3, what="dead letters")
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    values = {v["order_id"]: (v, r) for r in out for v in [orjson.loads(r.value)]}
    assert set(values) == expected and len(out) == len(expected)
    for i, (v, r) in values.items():
        product = f"p{i % 5 + 1}"
        assert v["product_id"] == product and v["price"] == f"{PRICES[product]:.2f}"
        assert v["total"] == round(PRICES[product] * (i % 4 + 1), 2)
        assert v["name"] and v["category"]
        assert r.key == f"c{i % 11}".encode()                      # key_field: customer
        assert dict(r.headers)["pipeline"] == b"kafka-enrich"
    by_key = {r.key: dict(r.headers) | {"value": r.value} for r in dlq}
    assert by_key[b"bad"]["value"] == b"{\"order_id\": "
    assert by_key[b"bad"]["streamflow.stage"] == b"parse"
    assert by_key[b"list"]["value"] == b"[1,2]" and by_key[b"list"]["streamflow.stage"] == b"filter"
    assert by_key[b"c1"]["streamflow.stage"] == b"price"
    assert b"unknown product 'p99'" in by_key[b"c1"]["streamflow.error"]
    assert by_key[b"c1"]["streamflow.source.topic"] == orders.encode()
    committed = await kafka.committed(f"g-{orders}", orders)
    assert sum(committed.values()) == len(events)                  # everything accounted for
