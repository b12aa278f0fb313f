"""OpenTelemetry tracing of a pipeline: a span per batch per stage, W3C trace context through headers.

`PipelineTracer` is the `BatchTracer` the runner uses under ``settings.tracing:
otlp`` (built by `otlp_tracer`, exporting over OTLP/HTTP as the ``OTEL_*``
environment variables say), or one a caller passes to `Runner` with a
`TracerProvider` of its own (tests use the SDK's in-memory exporter).

How a batch maps onto a trace (README "Tracing"):

* ``read <source>`` (CONSUMER): links to every distinct span context its
  events carry in a ``traceparent`` header (with its ``tracestate``), and is a
  child of it when they all carry the same one; otherwise it starts a trace.
* ``process <transform>``: a child of the span of the stage before; current
  while `process` runs, so spans that user code opens nest under it.
* ``write <sink>`` (PRODUCER): a child of the span of the stage before; every
  message the sink is given carries its ``traceparent`` (and ``tracestate``)
  header instead of the one it came with, so a Kafka record continues the
  trace in a downstream pipeline.

Each span has the pipeline, stage, batch size and source position as attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from .. import __version__
from ..connectors.kafka.logs import RepeatFilter
from ..core.batch import Batch
from ..core.message import Message
from ..core.tracing import BatchTracer

if TYPE_CHECKING:
    from ..core.loops import Output

__all__ = ["FLUSH_TIMEOUT", "TRACEPARENT", "TRACESTATE", "PipelineTracer", "otlp_tracer"]

#: The W3C trace-context headers (https://www.w3.org/TR/trace-context/).
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
_TRACE_HEADERS = frozenset((TRACEPARENT, TRACESTATE))
_PROPAGATOR = TraceContextTextMapPropagator()
#: Source ranges named in ``streamflow.source.position`` before it says how many more there are.
_MAX_RANGES = 16
#: Seconds the end of a run waits at most for its last spans to be exported.
FLUSH_TIMEOUT = 5.0
#: Loggers of the SDK and exporter that repeat themselves while the collector is down (one line per span).
NOISY_LOGGERS = ("opentelemetry.sdk._shared_internal", "opentelemetry.exporter.otlp.common.http",
                 "opentelemetry.exporter.otlp.proto.http.trace_exporter")

log = logging.getLogger("streamflow.tracing")

Attributes = dict[str, AttributeValue]


class _Trace:
    """What a traced batch carries in `Batch.trace`: the context of its last span and its source position."""

    __slots__ = ("context", "position")

    def __init__(self, context: Context, position: Attributes) -> None:
        self.context = context
        self.position = position


#: The trace of a batch no traced stage handled yet (emitted by a timer or a flush, or a dead letter).
_UNTRACED = _Trace(Context(), {})


class PipelineTracer(BatchTracer):
    """Spans of one pipeline's batches from ``provider``; shuts the provider down at the end if it owns it."""

    def __init__(self, provider: trace.TracerProvider, pipeline: str, *, owns_provider: bool = False) -> None:
        self._tracer = provider.get_tracer("streamflow", __version__)
        self._provider = provider
        self._owns_provider = owns_provider
        self.pipeline = pipeline
        #: Seconds the end of a run waits for the export of the last spans (an owned provider only).
        self.flush_timeout = FLUSH_TIMEOUT

    async def read(self, stage: str, read: Callable[[], Awaitable[Batch | None]]) -> Batch | None:
        started = time.time_ns()
        batch = await read()
        if batch is None or not batch.messages:
            return batch
        upstream, position = _upstream(batch.messages)
        parent = trace.set_span_in_context(NonRecordingSpan(upstream[0])) if len(upstream) == 1 else Context()
        span = self._tracer.start_span(f"read {stage}", parent, SpanKind.CONSUMER,
                                       self._attributes(stage, "source", batch, position),
                                       [Link(c) for c in upstream], started)
        span.end()
        batch.trace = _Trace(trace.set_span_in_context(span), position)
        return batch

    async def process(self, stage: str, batch: Batch, process: Callable[[Batch], Awaitable[Output]]) -> Output:
        span, came = self._start(f"process {stage}", SpanKind.INTERNAL, stage, "transform", batch)
        with trace.use_span(span, end_on_exit=True):
            result = await process(batch)
            outputs = (result,) if isinstance(result, Batch) else result or ()
            span.set_attribute("streamflow.batch.size_out", sum(len(b.messages) for b in outputs))
        traced = _Trace(trace.set_span_in_context(span), came.position)
        for b in outputs:
            b.trace = traced
        return result

    async def write(self, stage: str, batch: Batch, write: Callable[[Batch], Awaitable[None]]) -> None:
        span, came = self._start(f"write {stage}", SpanKind.PRODUCER, stage, "sink", batch)
        with trace.use_span(span, end_on_exit=True):
            context = trace.set_span_in_context(span)
            headers = trace_headers(context)
            traced = batch.derive([_with_headers(m, headers) for m in batch.messages])
            traced.trace = _Trace(context, came.position)
            await write(traced)

    async def close(self) -> None:
        """Shut down an owned provider, exporting what is buffered, waiting ``flush_timeout`` at most.

        The export runs in a daemon thread: a collector that is down holds neither
        the event loop nor the end of the run (the exporter itself retries for
        ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default); what it did not send is dropped.
        """
        provider = self._provider
        if not self._owns_provider or not isinstance(provider, SdkTracerProvider):
            return
        loop = asyncio.get_running_loop()
        flushed: asyncio.Future[None] = loop.create_future()

        def shutdown() -> None:
            try:
                provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is closed already: nobody waits
                    loop.call_soon_threadsafe(_settle, flushed)

        threading.Thread(target=shutdown, name="streamflow-tracing-flush", daemon=True).start()
        try:
            await asyncio.wait_for(flushed, self.flush_timeout)
        except TimeoutError:
            log.warning("tracing: spans not exported within %.1fs are dropped (is the OTLP endpoint %s up?)",
                        self.flush_timeout, _endpoint())

    def _start(self, name: str, span_kind: SpanKind, stage: str, kind: str, batch: Batch) -> tuple[Span, _Trace]:
        """A span of ``batch`` at ``stage``, a child of the batch's last span; and the batch's trace."""
        came = _trace_of(batch)
        span = self._tracer.start_span(name, came.context, span_kind,
                                       self._attributes(stage, kind, batch, came.position))
        return span, came

    def _attributes(self, stage: str, kind: str, batch: Batch, position: Attributes) -> Attributes:
        return {"streamflow.pipeline": self.pipeline, "streamflow.stage": stage, "streamflow.stage.kind": kind,
                "streamflow.batch.size": len(batch.messages), **position}


def otlp_tracer(pipeline: str) -> PipelineTracer:
    """A tracer exporting over OTLP/HTTP in batches, configured by the standard ``OTEL_*`` variables.

    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``), ``…_HEADERS`` and
    ``…_TIMEOUT`` are the exporter's; ``OTEL_TRACES_SAMPLER`` and ``…_ARG`` the
    sampler's; ``OTEL_BSP_*`` the batching's; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` the resource's, the service name defaulting to
    the pipeline's name.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: pipeline}))
    provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)  # the run shuts it down
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    repeats = RepeatFilter()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(repeats)
    return PipelineTracer(provider, pipeline, owns_provider=True)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():  # not given up on yet
        future.set_result(None)


def _endpoint() -> str:
    """Where the OTLP exporter sends spans, as the environment says."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return traces
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318").rstrip("/") + "/v1/traces"


def trace_headers(context: Context) -> list[tuple[str, bytes]]:
    """The ``traceparent`` (and ``tracestate``, if any) headers of the span current in ``context``."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context)
    return [(k, v.encode()) for k, v in carrier.items()]


def span_context_of(headers: Iterable[tuple[str, bytes]]) -> SpanContext | None:
    """The (valid) span context in W3C trace-context ``headers``, or None."""
    carrier = {k: _text(v) for k, v in headers if k in _TRACE_HEADERS}
    if TRACEPARENT not in carrier:
        return None
    found = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    return found if found.is_valid else None


def _trace_of(batch: Batch) -> _Trace:
    t = batch.trace
    return t if isinstance(t, _Trace) else _UNTRACED


def _upstream(messages: Sequence[Message]) -> tuple[list[SpanContext], Attributes]:
    """The distinct span contexts the messages' headers carry, and the position attributes of the batch.

    The one pass over the events tracing makes at a source: the headers' trace
    context, and the offset range of each (topic, partition).
    """
    carried: dict[object, list[tuple[str, bytes]]] = {}
    ranges: dict[tuple[str | None, int | None], list[int]] = {}
    for m in messages:
        if m.headers:
            tp = m.header(TRACEPARENT)
            if tp is not None and tp not in carried:
                ts = m.header(TRACESTATE)
                carried[tp] = [(TRACEPARENT, tp)] if ts is None else [(TRACEPARENT, tp), (TRACESTATE, ts)]
        off = m.offset
        if off is not None:
            r = ranges.get((m.topic, m.partition))
            if r is None:
                ranges[(m.topic, m.partition)] = [off, off]
            elif off < r[0]:
                r[0] = off
            elif off > r[1]:
                r[1] = off
    contexts = {(c.trace_id, c.span_id): c for h in carried.values() if (c := span_context_of(h)) is not None}
    return list(contexts.values()), _position(ranges)


def _position(ranges: dict[tuple[str | None, int | None], list[int]]) -> Attributes:
    """``streamflow.source.position`` (``topic[partition]@first-last, …``); with one range, its parts too."""
    if not ranges:
        return {}
    parts = [f"{'' if t is None else t}{'' if p is None else f'[{p}]'}@{lo}-{hi}"
             for (t, p), (lo, hi) in list(ranges.items())[:_MAX_RANGES]]
    if len(ranges) > _MAX_RANGES:
        parts.append(f"… {len(ranges) - _MAX_RANGES} more")
    attrs: Attributes = {"streamflow.source.position": ", ".join(parts)}
    if len(ranges) == 1:
        (topic, partition), (first, last) = next(iter(ranges.items()))
        if topic is not None:
            attrs["streamflow.source.topic"] = str(topic)
        if partition is not None:
            attrs["streamflow.source.partition"] = partition
        attrs["streamflow.source.offset.first"] = first
        attrs["streamflow.source.offset.last"] = last
    return attrs


def _with_headers(m: Message, context: list[tuple[str, bytes]]) -> Message:
    """A copy of ``m`` whose trace-context headers are ``context`` (its other headers kept, in order)."""
    headers = m.headers
    kept = [h for h in headers if h[0] not in _TRACE_HEADERS] if headers else []
    return Message(m.value, m.key, kept + context, m.timestamp, m.topic, m.partition, m.offset, m.raw)


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
