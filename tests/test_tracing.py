"""Tracing (README "Tracing"): a span per batch per stage, chained source -> transforms -> sink, with the
W3C trace context read from the input's headers and written into the output's; nothing when off."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from streamflow import Pipeline
from streamflow.config import InvalidConfig, load_yaml
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.batch import Batch
from streamflow.core.message import Message
from streamflow.core.runner import EXIT_FAILED, EXIT_OK, Runner
from streamflow.core.stage import Source, SourceConfig
from streamflow.core.tracing import OTEL_MODULES
from streamflow.observability.tracing import PipelineTracer, otlp_tracer
from streamflow.testing import run_tests

# Upstream span contexts as a producer would have written them (W3C trace-context examples).
P1 = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
P2 = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
P3 = b"00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01"


class Spans:
    """An SDK tracer provider whose spans end up in memory, finished spans only."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def tracer(self, pipeline: Pipeline) -> PipelineTracer:
        return PipelineTracer(self.provider, pipeline.name)

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def by_id(self) -> dict[int, ReadableSpan]:
        return {s.context.span_id: s for s in self.exporter.get_finished_spans()}


@pytest.fixture
def spans() -> Spans:
    return Spans()


class FixedSource(Source[SourceConfig]):
    """Emits the given batches of messages, as they are (headers included)."""

    def __init__(self, batches: list[list[Message]]) -> None:
        super().__init__(name="in")
        self.batches = list(batches)

    async def read(self) -> Batch | None:
        return Batch(self.batches.pop(0), []) if self.batches else None


def traceparent(span: ReadableSpan) -> bytes:
    c = span.context
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}".encode()


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def run(pipeline: Pipeline, tracer: PipelineTracer | None) -> None:
    result = await Runner(pipeline, handle_signals=False, tracer=tracer).run()
    assert result.exit_code == EXIT_OK, result.summary()


async def test_each_batch_has_a_span_per_stage_chained_from_source_to_sink(spans: Spans) -> None:
    current: set[int] = set()  # the span user code sees as current (its own spans would nest under it)

    async def slow_double(v: int) -> int:
        await asyncio.sleep(0)
        current.add(get_current_span().get_span_context().span_id)
        return v * 2

    sink = MemorySink(name="out")
    pipeline = (Pipeline("orders").source(MemorySource(values=list(range(250)), batch_size=100))
                .map(slow_double, name="double", concurrency=3)  # the concurrent loop
                .filter(lambda v: v % 3 != 0, name="thirds")
                .sink(sink))
    await run(pipeline, spans.tracer(pipeline))

    reads, doubles, thirds, writes = (spans.named(n) for n in
                                      ("read memory", "process double", "process thirds", "write out"))
    assert len(reads) == len(doubles) == len(thirds) == len(writes) == 3  # 250 events in batches of 100
    assert current == {d.context.span_id for d in doubles}
    by_id = spans.by_id()
    for write in writes:  # walk each chain back from the sink to its source read
        thirds_span = by_id[parent_id(write)]
        double_span = by_id[parent_id(thirds_span)]
        read = by_id[parent_id(double_span)]
        assert (thirds_span.name, double_span.name, read.name) == ("process thirds", "process double",
                                                                   "read memory")
        assert read.parent is None and not read.links  # the input carried no trace context
        assert len({s.context.trace_id for s in (write, thirds_span, double_span, read)}) == 1
        assert (read.kind, double_span.kind, write.kind) == (SpanKind.CONSUMER, SpanKind.INTERNAL,
                                                             SpanKind.PRODUCER)
        for s in (read, double_span, thirds_span, write):  # every span says where its batch came from
            assert s.attributes is not None
            assert s.attributes["streamflow.pipeline"] == "orders"
            assert s.attributes["streamflow.source.position"] == read.attributes["streamflow.source.position"]
        assert write.attributes is not None and thirds_span.attributes is not None
        assert write.attributes["streamflow.stage"] == "out"
        assert write.attributes["streamflow.batch.size"] == thirds_span.attributes["streamflow.batch.size_out"]
    assert sorted(r.attributes["streamflow.source.position"] for r in reads) == [  # type: ignore[index]
        "memory[0]@0-99", "memory[0]@100-199", "memory[0]@200-249"]
    assert sorted(r.attributes["streamflow.batch.size"] for r in reads) == [50, 100, 100]  # type: ignore[index]
    assert {r.attributes["streamflow.source.offset.first"] for r in reads} == {0, 100, 200}  # type: ignore[index]
    assert len({r.context.trace_id for r in reads}) == 3  # one trace per input batch

    # Every event written carries the traceparent of the write span that wrote it, and nothing is lost.
    assert sorted(sink.values) == sorted(v * 2 for v in range(250) if (v * 2) % 3 != 0)
    carried = Counter(m.header("traceparent") for m in sink.messages)
    assert carried == {traceparent(w): w.attributes["streamflow.batch.size"] for w in writes}  # type: ignore[index]


async def test_input_trace_context_makes_the_read_a_child_or_links_it(spans: Spans) -> None:
    """One upstream context for the whole batch: a child of it; several: a new trace linking each."""
    state = [("tracestate", b"vendor=abc")]
    one = [Message({"n": i}, headers=[("traceparent", P1), *state], topic="in", partition=0, offset=i)
           for i in range(3)]
    mixed = [Message({"n": 10}, headers=[("traceparent", P2)], topic="in", partition=1, offset=7),
             Message({"n": 11}, headers=[("other", b"kept"), ("traceparent", P3)], topic="in", partition=1,
                     offset=8),
             Message({"n": 12}, headers=[("traceparent", P2)], topic="in", partition=1, offset=9),
             Message({"n": 13}, headers=[("traceparent", b"not-a-traceparent")], topic="in", partition=2,
                     offset=1),
             Message({"n": 14}, topic="in", partition=2, offset=2)]
    sink = MemorySink(name="out")
    pipeline = Pipeline("links").source(FixedSource([one, mixed])).sink(sink)
    await run(pipeline, spans.tracer(pipeline))

    first, second = sorted(spans.named("read in"), key=lambda s: s.attributes["streamflow.batch.size"])  # type: ignore[index]
    # the batch whose events all carry P1 continues P1's trace, as a child of it, and links it too
    assert f"{first.context.trace_id:032x}" == P1.split(b"-")[1].decode()
    assert first.parent is not None and f"{first.parent.span_id:016x}" == P1.split(b"-")[2].decode()
    assert [f"{lk.context.span_id:016x}" for lk in first.links] == [P1.split(b"-")[2].decode()]
    # the mixed batch starts a trace of its own and links each distinct upstream span once;
    # the malformed traceparent is ignored, not an error
    assert second.parent is None
    assert {(f"{lk.context.trace_id:032x}", f"{lk.context.span_id:016x}") for lk in second.links} == {
        (P2.split(b"-")[1].decode(), P2.split(b"-")[2].decode()),
        (P3.split(b"-")[1].decode(), P3.split(b"-")[2].decode())}
    assert second.attributes is not None
    assert second.attributes["streamflow.source.position"] == "in[1]@7-9, in[2]@1-2"
    assert "streamflow.source.partition" not in second.attributes  # several ranges: no single partition

    # the output replaces the input's trace headers by the write span's; other headers are kept
    writes = {w.parent.span_id: w for w in spans.named("write out") if w.parent is not None}
    by_value = {m.value["n"]: m for m in sink.messages}
    w1, w2 = writes[first.context.span_id], writes[second.context.span_id]
    assert [h for h in by_value[0].headers or () if h[0] == "traceparent"] == [("traceparent", traceparent(w1))]
    assert by_value[0].header("tracestate") == b"vendor=abc"  # the trace's state goes on with it
    assert by_value[11].headers == [("other", b"kept"), ("traceparent", traceparent(w2))]
    assert by_value[14].headers == [("traceparent", traceparent(w2))]


async def test_a_failing_stage_ends_its_span_with_the_error(spans: Spans) -> None:
    def boom(v: int) -> int:
        raise RuntimeError(f"cannot handle {v}")

    pipeline = (Pipeline("fails").source(MemorySource(values=[1, 2], batch_size=10))
                .map(boom, name="boom", on_error={"policy": "fail"}).sink(MemorySink(name="out")))
    result = await Runner(pipeline, handle_signals=False, tracer=spans.tracer(pipeline)).run()
    assert result.exit_code == EXIT_FAILED
    [span] = spans.named("process boom")
    assert span.status.status_code == StatusCode.ERROR
    assert "cannot handle 1" in (span.status.description or "")
    assert spans.named("write out") == []


async def test_tracing_off_touches_no_event(spans: Spans) -> None:
    """Off (the default): batches carry no trace, the sink gets the very messages read, headers as they came."""
    msgs = [Message({"n": i}, headers=[("traceparent", P1)], topic="in", partition=0, offset=i) for i in range(5)]
    sink = MemorySink(name="out")
    pipeline = Pipeline("off").source(FixedSource([list(msgs)])).sink(sink)
    runner = Runner(pipeline, handle_signals=False)
    result = await runner.run()
    assert result.exit_code == EXIT_OK
    assert runner.tracer is None
    assert all(a is b for a, b in zip(sink.messages, msgs, strict=True))  # no copies
    assert all(m.headers == [("traceparent", P1)] for m in sink.messages)
    assert spans.exporter.get_finished_spans() == ()


async def test_otel_sdk_disabled_turns_the_setting_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    runner = Runner(Pipeline("p", tracing="otlp").source(MemorySource(values=[1])).sink(MemorySink(name="out")),
                    handle_signals=False)
    assert (await runner.run()).exit_code == EXIT_OK
    assert runner.tracer is None


@pytest.fixture
async def otlp(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[ExportTraceServiceRequest]]:
    """A real OTLP/HTTP receiver on a free port of 127.0.0.1, named by ``OTEL_EXPORTER_OTLP_ENDPOINT``;
    the export requests it received."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.port}")
    try:
        yield received
    finally:
        await server.close()


async def test_otlp_exporter_is_configured_by_the_otel_environment(
        otlp: list[ExportTraceServiceRequest], monkeypatch: pytest.MonkeyPatch) -> None:
    """``tracing: otlp`` sends the spans to ``OTEL_EXPORTER_OTLP_ENDPOINT``, named by
    ``OTEL_SERVICE_NAME``, sampled by ``OTEL_TRACES_SAMPLER``."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-service")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    sink = MemorySink(name="out")
    pipeline = (Pipeline("exported", tracing="otlp").source(MemorySource(values=list(range(30)), batch_size=10))
                .map(lambda v: v + 1, name="inc").sink(sink))
    await run(pipeline, None)  # the run's end flushes the exporter

    resource_spans = [rs for req in otlp for rs in req.resource_spans]
    services = {a.value.string_value for rs in resource_spans for a in rs.resource.attributes
                if a.key == "service.name"}
    assert services == {"orders-service"}
    names = Counter(s.name for rs in resource_spans for ss in rs.scope_spans for s in ss.spans)
    assert names == {"read memory": 3, "process inc": 3, "write out": 3}
    exported_ids = {s.span_id.hex() for rs in resource_spans for ss in rs.scope_spans for s in ss.spans
                    if s.name == "write out"}
    assert {m.header("traceparent").split(b"-")[2].decode() for m in sink.messages} == exported_ids  # type: ignore[union-attr]


async def test_a_collector_that_is_down_does_not_hold_the_end_of_the_run(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nothing listens on: every export is refused, and retried
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    # the exporter's own retries (waits of 1 s, 2 s … with random jitter) then give up within 3 s, not 10:
    # its thread is gone before later tests run (Hypothesis warns if `random` is used while it draws)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "3")
    pipeline = Pipeline("down").source(MemorySource(values=[1, 2, 3])).sink(MemorySink(name="out"))
    tracer = otlp_tracer(pipeline.name)
    tracer.flush_timeout = 0.2  # instead of FLUSH_TIMEOUT, to keep the test short
    with caplog.at_level(logging.WARNING, "streamflow.tracing"):
        await run(pipeline, tracer)
    assert f"spans not exported within 0.2s are dropped (is the OTLP endpoint http://127.0.0.1:{port}/v1/traces up?)" \
        in caplog.text


async def test_config_unit_tests_of_a_traced_pipeline_export_nothing(
        otlp: list[ExportTraceServiceRequest], tmp_path: Path) -> None:
    """`streamflow test` runs a pipeline's cases untraced, as it runs them without the ops server."""
    (tmp_path / "traced.yaml").write_text(textwrap.dedent("""\
        name: traced
        settings: {tracing: otlp}
        source: {type: memory, values: [1]}
        stages: [{type: map, fn: "operator:neg"}]
        sinks: [{type: memory}]
        """))
    (tmp_path / "traced.test.yaml").write_text(textwrap.dedent("""\
        tests:
          - name: negates
            input: [1, 2]
            expect: {output: [-1, -2]}
        """))
    lines: list[str] = []
    report = await asyncio.to_thread(run_tests, [tmp_path], lines.append)  # its own event loop
    assert report.exit_code == 0, "\n".join(lines)
    assert "1 passed" in report.summary()
    assert otlp == []


def test_tracing_setting_is_checked_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def pipeline_file(tracing: str) -> Path:
        path = tmp_path / f"{tracing}.yaml"
        path.write_text(textwrap.dedent(f"""\
            name: traced
            settings:
              tracing: {tracing}
            source: {{type: memory, values: [1]}}
            sinks: [{{type: memory}}]
            """))
        return path

    assert load_yaml(pipeline_file("otlp")).settings.tracing == "otlp"
    assert load_yaml(pipeline_file("off")).settings.tracing == "off"
    with pytest.raises(InvalidConfig) as bad:
        load_yaml(pipeline_file("jaeger"))
    assert "settings.tracing" in str(bad.value) and "otlp" in str(bad.value)

    for name in OTEL_MODULES:  # as if the otel extra were not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InvalidConfig) as missing:
        load_yaml(pipeline_file("otlp"))
    text = str(missing.value)
    assert "otlp.yaml:3" in text and "settings.tracing" in text
    assert "pip install 'streamflow[otel]'" in text
