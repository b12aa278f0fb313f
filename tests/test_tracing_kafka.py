"""Tracing across Kafka (README "Tracing"), against the real broker: pipeline A reads records that carry
an upstream producer's traceparent and writes topic t; pipeline B reads t. Every output record leads,
span by span and link by link, back to the producer span of its input."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span

from streamflow import Pipeline
from streamflow.connectors.kafka import KafkaSink, KafkaSource
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.observability.tracing import PipelineTracer

pytestmark = pytest.mark.kafka

N = 90


def traceparent_of(span: ReadableSpan | Span) -> bytes:
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}".encode()


def trace_headers(record: Any) -> list[bytes]:
    return [v for k, v in record.headers if k == "traceparent"]


async def run_both(a: Runner, b: Runner, until: Any) -> Any:
    """Run both pipelines until ``until`` is done; then drain them (the SIGTERM path)."""
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    waited = asyncio.ensure_future(until)
    try:
        done, _ = await asyncio.wait({waited, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        assert waited in done, f"a pipeline ended early: {[t.result().summary() for t in tasks if t.done()]}"
        return waited.result()
    finally:
        waited.cancel()
        a.stop()
        b.stop()
        for result in await asyncio.wait_for(asyncio.gather(*tasks), 60):
            assert result.exit_code == EXIT_OK, result.summary()


async def test_trace_goes_from_a_producer_through_two_pipelines_joined_by_a_topic(kafka: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inp, t, out = await kafka.topic("otel-in"), await kafka.topic("otel-t"), await kafka.topic("otel-out")

    # an upstream service: one producer span per partition, its traceparent on each record it wrote
    upstream = [provider.get_tracer("upstream").start_span(f"produce {p}") for p in range(3)]
    for span in upstream:
        span.end()
    await kafka.produce(inp, [{"value": {"id": i}, "partition": i % 3,
                               "headers": [("traceparent", traceparent_of(upstream[i % 3])), ("app", b"x")]}
                              for i in range(N)])

    a = (Pipeline("A", commit_interval=0.2)
         .source(KafkaSource(name="orders", bootstrap_servers=kafka.bootstrap, topics=[inp], group_id=f"g-{inp}",
                             batch_size=20))
         .map(lambda v: {**v, "seen": "A"}, name="mark")
         .sink(KafkaSink(name="to-t", bootstrap_servers=kafka.bootstrap, topic=t)))
    b = (Pipeline("B", commit_interval=0.2)
         .source(KafkaSource(name="from-t", bootstrap_servers=kafka.bootstrap, topics=[t], group_id=f"g-{t}"))
         .sink(KafkaSink(name="to-out", bootstrap_servers=kafka.bootstrap, topic=out)))
    runners = [Runner(p, handle_signals=False, tracer=PipelineTracer(provider, p.name)) for p in (a, b)]

    def ids(records: list[Any]) -> set[int]:
        return {orjson.loads(r.value)["id"] for r in records}

    outputs = await run_both(*runners, kafka.consume(out, lambda rs: ids(rs) >= set(range(N)), what="B output"))
    middle = await kafka.consume(t, lambda rs: ids(rs) >= set(range(N)), what="A output")

    spans = {s.context.span_id: s for s in exporter.get_finished_spans()}

    def span_of(traceparent: bytes) -> ReadableSpan:
        return spans[int(traceparent.split(b"-")[2], 16)]

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, f"{span.name} has no parent"
        return spans[span.parent.span_id]

    # A's read spans: each fetch is of one partition, all its records from one producer span -> its child
    a_reads = [s for s in spans.values() if s.name == "read orders"]
    assert a_reads
    for read in a_reads:
        assert read.attributes is not None and read.attributes["streamflow.source.topic"] == inp
        producer = upstream[read.attributes["streamflow.source.partition"]]  # type: ignore[index]
        assert read.parent is not None and read.parent.span_id == producer.get_span_context().span_id
        assert [lk.context.span_id for lk in read.links] == [producer.get_span_context().span_id]
        assert read.context.trace_id == producer.get_span_context().trace_id

    # t's records carry exactly one traceparent: the A write span that wrote them (other headers kept)
    a_writes = {s.context.span_id for s in spans.values() if s.name == "write to-t"}
    by_id_t = {orjson.loads(r.value)["id"]: r for r in middle}
    for record in middle:
        [tp] = trace_headers(record)
        assert span_of(tp).context.span_id in a_writes
        assert ("app", b"x") in list(record.headers)

    # B's read spans link to the A write spans of their records; a child of it when there is one only
    b_reads = [s for s in spans.values() if s.name == "read from-t"]
    linked = {lk.context.span_id for r in b_reads for lk in r.links}
    assert linked == a_writes
    for read in b_reads:
        if len(read.links) == 1:
            assert read.parent is not None and read.parent.span_id == read.links[0].context.span_id
        else:
            assert read.parent is None

    # each output record, walked back: B write -> B read -(link)-> A write -> A mark -> A read -> producer
    for record in outputs:
        i = orjson.loads(record.value)["id"]
        [tp] = trace_headers(record)
        b_write = span_of(tp)
        assert b_write.name == "write to-out" and b_write.attributes is not None
        assert b_write.attributes["streamflow.pipeline"] == "B"
        b_read = parent(b_write)
        assert b_read.name == "read from-t"
        [a_tp] = trace_headers(by_id_t[i])
        a_write = span_of(a_tp)
        assert a_write.context.span_id in {lk.context.span_id for lk in b_read.links}
        a_mark = parent(a_write)
        a_read = parent(a_mark)
        assert (a_mark.name, a_read.name) == ("process mark", "read orders")
        assert parent(a_read) is spans[upstream[i % 3].get_span_context().span_id]
