"""avro-decode / avro-encode: the schema-registry Avro codec per event against bare fastavro.

``bare`` decodes (or encodes) each payload with fastavro directly, in
batches of 1000, the schema already parsed; ``streamflow`` runs a pipeline
whose `schema_decode` (or `schema_encode`) stage does the same through a
registry: the stand-in registry of the tests, in the same process, asked
once. Both keep a digest of what they made, checked by the parent.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import orjson

from . import data
from .harness import Stopwatch, Workload, module_available, tune_like_streamflow

SCHEMA = {"type": "record", "name": "Event", "namespace": "bench", "fields": [
    {"name": "id", "type": "long"}, {"name": "user", "type": "string"}, {"name": "kind", "type": "string"},
    {"name": "amount", "type": "double"}, {"name": "ok", "type": "boolean"}]}
BATCH = 1000


def make_record(i: int) -> dict[str, Any]:
    return {"id": i, "user": f"u{i % 1000}", "kind": ("click", "view", "buy")[i % 3], "amount": i * 0.25,
            "ok": i % 7 != 0}


def payloads(n: int) -> list[bytes]:
    """The wire-format payloads of records 0..n-1 (schema id 1)."""
    import fastavro

    parsed = fastavro.parse_schema(SCHEMA)
    out = []
    for i in range(n):
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, make_record(i))
        out.append(b"\x00\x00\x00\x00\x01" + body.getvalue())
    return out


def expected_digest(n: int, encoded: bool) -> data.Digest:
    b = data.DigestBuilder()
    if encoded:
        b.add_records({"id": i, "hex": p.hex()} for i, p in enumerate(payloads(n)))
    else:
        b.add_records(make_record(i) for i in range(n))
    return b.digest()


class AvroDecode(Workload):
    name = "avro-decode"
    variants = ("bare", "streamflow")
    default_n = 200_000
    encode: ClassVar[bool] = False

    def unavailable(self, variant: str) -> str | None:
        return module_available("fastavro")

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        return data.Digest(**result.pop("digest")).mismatch(expected_digest(params["n"], self.encode))

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        import uvloop

        run = {"bare": run_bare, "streamflow": run_streamflow}[variant]
        return uvloop.run(run(params["n"], cls.encode))


class AvroEncode(AvroDecode):
    name = "avro-encode"
    encode = True


async def run_bare(n: int, encode: bool) -> dict[str, Any]:
    import fastavro

    tune_like_streamflow()
    parsed = fastavro.parse_schema(SCHEMA)
    inputs: list[Any] = [make_record(i) for i in range(n)] if encode else payloads(n)
    reader, writer, header = fastavro.schemaless_reader, fastavro.schemaless_writer, b"\x00\x00\x00\x00\x01"
    b = data.DigestBuilder()
    with Stopwatch() as sw:
        for start in range(0, n, BATCH):
            chunk = inputs[start:start + BATCH]
            if encode:
                out = []
                for record in chunk:
                    body = io.BytesIO()
                    writer(body, parsed, record)
                    out.append(header + body.getvalue())
                b.add_records({"id": i, "hex": p.hex()} for i, p in enumerate(out, start))
            else:
                b.add_records([reader(io.BytesIO(memoryview(p)[5:]), parsed, None) for p in chunk])
    return sw.result(n, digest=b.digest().to_json())


async def run_streamflow(n: int, encode: bool) -> dict[str, Any]:
    from streamflow import Pipeline
    from streamflow.connectors.memory import MemorySource
    from streamflow.core.batch import Batch
    from streamflow.core.runner import Runner
    from streamflow.core.stage import Sink
    from tests.registry.server import StandInRegistry, serve

    registry = StandInRegistry()
    registry.add("events-value", orjson.dumps(SCHEMA).decode())  # the text schema_encode registers: id 1
    server, url = await serve(registry)
    b = data.DigestBuilder()

    class DigestSink(Sink):
        async def write(self, batch: Batch) -> None:
            msgs = batch.messages
            b.add_records([{"id": m.offset, "hex": m.value.hex()} for m in msgs] if encode
                          else [m.value for m in msgs])

    inputs: list[Any] = [make_record(i) for i in range(n)] if encode else payloads(n)
    stage = ("schema_encode", {"schema": SCHEMA, "topic": "events"}) if encode else ("schema_decode", {})
    p = (Pipeline("avro").source(MemorySource(values=inputs, batch_size=BATCH))
         .transform(stage[0], codec="avro", registry={"url": url}, **stage[1]).sink(DigestSink()))
    try:
        with Stopwatch() as sw:
            result = await Runner(p, handle_signals=False).run()
    finally:
        await server.cleanup()
    if result.exit_code != 0:
        raise RuntimeError(f"pipeline failed: {result.summary()}")
    return sw.result(result.events_in, digest=b.digest().to_json())
