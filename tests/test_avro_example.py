"""pipelines/avro_orders.yaml, run with the `streamflow` CLI against a real broker and the stand-in
schema registry of tests/registry/server.py (our own server speaking the registry's REST API)."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import fastavro
import pytest

from streamflow.codecs.registry import wire
from tests.registry.server import StandInRegistry, serve

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.kafka


def avro(schema: dict, record: dict, schema_id: int) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return wire.header(schema_id) + body.getvalue()


async def test_avro_orders_yaml(kafka, pipeline_process):
    registry = StandInRegistry(username="svc", password="pw")
    runner, url = await serve(registry)
    try:
        order = json.loads((ROOT / "pipelines/schemas/order.avsc").read_text())
        order_id = registry.add("orders-value", json.dumps(order))
        orders, totals, dead = (await kafka.topic("orders"), await kafka.topic("totals"), await kafka.topic("dlq"))
        events = [{"key": f"c{i % 7}", "partition": i % 3, "value": avro(order, {
            "order_id": i, "customer": f"c{i % 7}", "product_id": "p1", "quantity": i % 4 + 1,
            "unit_price": 24.5}, order_id)} for i in range(200)]
        events.append({"key": "json", "partition": 0, "value": b'{"order_id": 1}'})        # not the wire format
        events.append({"key": "unknown", "partition": 1, "value": wire.header(77) + b"\x02"})  # no such schema
        await kafka.produce(orders, events)

        proc = pipeline_process(ROOT / "pipelines/avro_orders.yaml", cwd=ROOT, KAFKA_BOOTSTRAP=kafka.bootstrap,
                                ORDERS_TOPIC=orders, TOTALS_TOPIC=totals, DEAD_LETTER_TOPIC=dead,
                                GROUP_ID=f"g-{orders}", SCHEMA_REGISTRY_URL=url, SCHEMA_REGISTRY_USER="svc",
                                SCHEMA_REGISTRY_PASSWORD="pw").start()
        out = await kafka.consume(totals, lambda r: len(r) >= 200, what="order totals")
        dlq = await kafka.consume(dead, lambda r: len(r) >= 2, what="dead letters")
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0, proc.tail()
    finally:
        await runner.cleanup()

    written_id = registry.subjects[f"{totals}-value"][0]
    writer = fastavro.parse_schema(json.loads(registry.schemas[written_id][1]))
    assert registry.schemas[written_id][1] == (ROOT / "pipelines/schemas/order_total.avsc").read_text()
    values = {}
    for r in out:
        schema_id, body = wire.split(r.value)
        assert schema_id == written_id
        value = fastavro.schemaless_reader(io.BytesIO(body), writer)
        values[value["order_id"]] = (value, r.key)
    assert sorted(values) == list(range(200))
    for i, (v, key) in values.items():
        assert v["total"] == round(24.5 * (i % 4 + 1), 2) and v["large"] == (v["total"] >= 100)
        assert key == f"c{i % 7}".encode()
    by_key = {r.key: dict(r.headers) | {"value": r.value} for r in dlq}
    assert by_key[b"unknown"]["streamflow.schema_id"] == b"77"
    assert by_key[b"unknown"]["streamflow.stage"] == b"schema_decode"
    assert "streamflow.schema_id" not in by_key[b"json"] and b"magic byte" in by_key[b"json"]["streamflow.error"]
    assert by_key[b"json"]["value"] == b'{"order_id": 1}'
    assert [q for q in registry.requests if q.startswith("GET")] == [f"GET /schemas/ids/{order_id}",
                                                                     "GET /schemas/ids/77"]
    committed = await kafka.committed(f"g-{orders}", orders)
    assert sum(committed.values()) == len(events)
