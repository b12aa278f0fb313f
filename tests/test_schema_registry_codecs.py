"""avro, json_schema and protobuf codecs in the schema-registry wire format, through the
`schema_encode` / `schema_decode` stages, against the stand-in registry of `tests/registry/server.py`
(our own server speaking the registry's REST API: no registry server can be had here)."""

from __future__ import annotations

import io
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from streamflow import Pipeline
from streamflow.codecs.registry import wire
from streamflow.codecs.registry.subjects import subject_name
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import EXIT_OK, Runner
from tests.registry.server import StandInRegistry, serve

ORDER_V1 = {"type": "record", "name": "Order", "namespace": "shop",
            "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]}
ORDER_V2 = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "note", "type": "string", "default": "none"}]}
ORDER_JSON = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Order", "type": "object",
              "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
              "required": ["id", "qty"]}


@pytest.fixture
async def registry() -> AsyncIterator[tuple[StandInRegistry, str]]:
    state = StandInRegistry()
    runner, url = await serve(state)
    yield state, url
    await runner.cleanup()


async def run(values: list[Any], *stages: dict[str, Any], batch_size: int = 50) -> tuple[list[Any], list[Any]]:
    """Run ``values`` through ``stages`` (each ``{"type": …, **options}``): the output and dead letters."""
    src = MemorySource(values=values, batch_size=batch_size)
    out, dlq = MemorySink(name="out"), MemorySink(name="dlq")
    p = Pipeline("registry").source(src)
    for stage in stages:
        p = p.transform(stage["type"], **{k: v for k, v in stage.items() if k != "type"})
    result = await Runner(p.sink(out).dead_letter(dlq), handle_signals=False).run()
    assert result.exit_code == EXIT_OK
    assert src.committed == {0: len(values)}  # everything acknowledged: written or dead-lettered
    return out.values, dlq.values


def avro_payload(schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """What another producer writes: the wire header, then the Avro body made by bare fastavro."""
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record)
    return wire.header(schema_id) + body.getvalue()


async def test_avro_round_trip_registers_once_and_fetches_each_id_once(
        registry: tuple[StandInRegistry, str]) -> None:
    state, url = registry
    orders = [{"id": f"o{i}", "qty": i} for i in range(300)]
    encoded, dead = await run(orders, {"type": "schema_encode", "codec": "avro", "registry": {"url": url},
                                       "schema": ORDER_V1, "topic": "orders"})
    assert dead == []
    assert state.subjects == {"orders-value": [1]}
    assert all(p[:5] == b"\x00\x00\x00\x00\x01" for p in encoded)
    assert fastavro.schemaless_reader(io.BytesIO(encoded[7][5:]), fastavro.parse_schema(ORDER_V1)) == orders[7]
    assert state.requests == ["POST /subjects/orders-value/versions"]  # once, for six batches

    decoded, dead = await run(encoded, {"type": "schema_decode", "codec": "avro", "registry": {"url": url}})
    assert decoded == orders and dead == []
    assert state.requests[1:] == ["GET /schemas/ids/1"]  # cached after the first batch


async def test_avro_reader_schema_resolves_older_writers(registry: tuple[StandInRegistry, str]) -> None:
    state, url = registry
    v1 = state.add("orders-value", json.dumps(ORDER_V1))
    v2 = state.add("orders-value", json.dumps(ORDER_V2))
    payloads = [avro_payload(v1, ORDER_V1, {"id": "a", "qty": 1}),
                avro_payload(v2, ORDER_V2, {"id": "b", "qty": 2, "note": "gift"})]
    decoded, dead = await run(payloads, {"type": "schema_decode", "codec": "avro", "registry": {"url": url},
                                         "schema": ORDER_V2})
    assert dead == []
    assert decoded == [{"id": "a", "qty": 1, "note": "none"}, {"id": "b", "qty": 2, "note": "gift"}]


async def test_undecodable_payloads_go_to_the_dead_letter_with_their_schema_id(
        registry: tuple[StandInRegistry, str]) -> None:
    state, url = registry
    v1 = state.add("orders-value", json.dumps(ORDER_V1))
    json_id = state.add("other-value", json.dumps(ORDER_JSON), "JSON")
    good = avro_payload(v1, ORDER_V1, {"id": "a", "qty": 1})
    payloads = [good, wire.header(999) + b"\x02a\x02",        # unknown schema id
                wire.header(v1) + b"\xff",                      # a body the schema cannot read
                b'{"id": "plain json"}',                         # not the wire format
                wire.header(json_id) + b'{"id": "a", "qty": 1}',  # a JSON schema's payload
                good]
    decoded, dead = await run(payloads, {"type": "schema_decode", "codec": "avro", "registry": {"url": url},
                                         "on_error": "dead_letter"})
    assert decoded == [{"id": "a", "qty": 1}] * 2
    assert [d.get("schema_id") for d in dead] == [999, v1, None, json_id]
    assert [d["source"]["offset"] for d in dead] == [1, 2, 3, 4]
    assert "answered 404 (40403)" in dead[0]["error"]
    assert "cannot decode the AVRO body" in dead[1]["error"]
    assert "magic byte" in dead[2]["error"]
    assert "is a JSON schema, not AVRO" in dead[3]["error"]
    assert dead[1]["payload"] == (wire.header(v1) + b"\xff").hex()   # the original bytes
    assert dead[2]["payload"] == '{"id": "plain json"}'


async def test_json_schema_validates_on_both_sides(registry: tuple[StandInRegistry, str]) -> None:
    state, url = registry
    values = [{"id": "a", "qty": 1}, {"id": "b", "qty": 0}, {"qty": 3}, {"id": "d", "qty": 4}]
    encoded, dead = await run(values, {"type": "schema_encode", "codec": "json_schema", "registry": {"url": url},
                                       "schema": ORDER_JSON, "topic": "orders",
                                       "subject_strategy": "topic_record", "on_error": "dead_letter"})
    assert list(state.subjects) == ["orders-Order"]
    assert [d["schema_id"] for d in dead] == [1, 1]
    assert "not valid at qty: 0 is less than the minimum of 1" in dead[0]["error"]
    assert "'id' is a required property" in dead[1]["error"]

    invalid = wire.header(1) + b'{"id": "x", "qty": -5}'
    decoded, dead = await run([*encoded, invalid], {"type": "schema_decode", "codec": "json_schema",
                                                    "registry": {"url": url}, "on_error": "dead_letter"})
    assert decoded == [values[0], values[3]]
    assert [(d["schema_id"], d["payload"]) for d in dead] == [(1, invalid.decode())]  # UTF-8: as text


async def test_protobuf_round_trip_with_the_record_strategy(registry: tuple[StandInRegistry, str]) -> None:
    state, url = registry
    orders = [{"id": f"o{i}", "qty": i, "lines": [{"sku": f"s{i}"}]} for i in range(1, 4)]
    stage = {"codec": "protobuf", "registry": {"url": url}, "message": "tests.registry.orders_pb:Order"}
    encoded, _ = await run(orders, {"type": "schema_encode", **stage, "subject_strategy": "record"})
    assert list(state.subjects) == ["shop.Order"] and state.schemas[1][0] == "PROTOBUF"
    assert encoded[0][5:6] == b"\x00"   # message index path [0]: the file's first message
    decoded, dead = await run(encoded, {"type": "schema_decode", **stage})
    assert decoded == orders and dead == []

    refunds, _ = await run([{"order_id": "o1", "cents": 250}],
                           {"type": "schema_encode", **stage, "message": "tests.registry.orders_pb:Refund",
                            "subject_strategy": "record"})
    assert refunds[0][5:7] == b"\x02\x02"   # path [1]: one index (zigzag 2), then 1 (zigzag 2)
    _, dead = await run(refunds, {"type": "schema_decode", **stage, "on_error": "dead_letter"})
    # one .proto file: Order and Refund share its schema (and id); the index path tells them apart
    assert "message index path [1] is not shop.Order" in dead[0]["error"] and dead[0]["schema_id"] == 1


async def test_lookup_only_subjects_must_exist(registry: tuple[StandInRegistry, str]) -> None:
    state, url = registry
    stage = {"type": "schema_encode", "codec": "avro", "registry": {"url": url}, "schema": ORDER_V1,
             "topic": "orders", "auto_register": False, "on_error": "dead_letter"}
    _, dead = await run([{"id": "a", "qty": 1}], stage)
    assert "answered 404 (40401)" in dead[0]["error"] and state.subjects == {}
    state.add("orders-value", json.dumps(ORDER_V1, separators=(",", ":")))
    encoded, dead = await run([{"id": "a", "qty": 1}], stage)
    assert dead == [] and encoded[0][:5] == wire.header(1)
    assert state.requests[-1] == "POST /subjects/orders-value"


async def test_basic_auth_bearer_tokens_and_retries() -> None:
    state = StandInRegistry(username="svc", password="pw")
    runner, url = await serve(state)
    try:
        stage = {"type": "schema_encode", "codec": "avro", "schema": ORDER_V1, "topic": "t",
                 "on_error": "dead_letter"}
        _, dead = await run([{"id": "a", "qty": 1}], {**stage, "registry": {"url": url}})
        assert "answered 401 (40101)" in dead[0]["error"]
        assert len(state.requests) == 1   # a 4xx is not retried
        state.fail_next = 2               # two 503s, then the answer
        encoded, dead = await run([{"id": "a", "qty": 1}], {**stage, "registry": {
            "url": url, "username": "svc", "password": "pw", "retry": {"backoff": 0.01}}})
        assert dead == [] and len(encoded) == 1 and len(state.requests) == 4
        state.username, state.token = None, "t0ken"
        _, dead = await run([encoded[0]], {"type": "schema_decode", "codec": "avro",
                                           "registry": {"url": url, "token": "t0ken"}})
        assert dead == []
    finally:
        await runner.cleanup()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files), made by the openssl command."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


async def test_tls_trusts_the_given_ca_only(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    state = StandInRegistry()
    runner, url = await serve(state, tls)
    try:
        assert url.startswith("https://")
        stage = {"type": "schema_encode", "codec": "avro", "schema": ORDER_V1, "topic": "t",
                 "on_error": "dead_letter"}
        _, dead = await run([{"id": "a", "qty": 1}], {**stage, "registry": {"url": url}})
        assert "certificate verify failed" in dead[0]["error"] and state.subjects == {}
        encoded, dead = await run([{"id": "a", "qty": 1}], {**stage, "registry": {"url": url, "ca_file": cert}})
        assert dead == [] and list(state.subjects) == ["t-value"]
        _, dead = await run(encoded, {"type": "schema_decode", "codec": "avro",
                                      "registry": {"url": url, "verify": False}})
        assert dead == []
    finally:
        await runner.cleanup()


def test_subject_strategies() -> None:
    assert subject_name("topic", "orders", "shop.Order") == "orders-value"
    assert subject_name("topic", "orders", None, key=True) == "orders-key"
    assert subject_name("record", None, "shop.Order") == "shop.Order"
    assert subject_name("topic_record", "orders", "shop.Order") == "orders-shop.Order"
    with pytest.raises(ValueError, match="needs a named schema"):
        subject_name("record", "orders", None)


def test_protobuf_message_indexes_round_trip() -> None:
    for path in ([0], [1], [0, 0], [3, 1, 200]):
        encoded = wire.message_indexes(path)
        assert wire.split_indexes(memoryview(encoded + b"rest")) == (path, memoryview(b"rest"))


@pytest.mark.parametrize(("stage", "error"), [
    ({"type": "schema_encode", "codec": "avro", "topic": "t"}, "`schema` \\(the writer schema\\) is required"),
    ({"type": "schema_encode", "codec": "avro", "schema": ORDER_V1}, "subject_strategy topic needs `topic`"),
    ({"type": "schema_decode", "codec": "protobuf"}, "`message`"),
    ({"type": "schema_decode", "codec": "avro", "registry": {"url": "localhost:8081"}}, "must start with http"),
    ({"type": "schema_decode", "codec": "avro", "registry": {"url": "http://r", "username": "u"}},
     "both `username` and `password`"),
])
def test_config_errors(stage: dict[str, Any], error: str) -> None:
    options = {"registry": {"url": "http://127.0.0.1:1"}, **stage}
    with pytest.raises(ValueError, match=error):
        Pipeline("x").transform(options.pop("type"), **options)


def test_a_connector_cannot_use_a_registry_codec_alone() -> None:
    with pytest.raises(ValueError, match="needs a registry: use it in a `schema_decode`"):
        Pipeline("x").source("kafka", topics=["t"], group_id="g", codec="avro").sink(MemorySink()).validate()

