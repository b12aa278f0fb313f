"""`BatchTracer`: what the engine calls, once per batch per stage, when a pipeline is traced.

A pipeline that is not traced has no tracer: the runner hands the stage loops
None, and they pay one ``is None`` check per batch and nothing per event. A
traced one wraps each source read, transform `process` and sink write in a
tracer call that opens a span around it. The OpenTelemetry implementation is
`streamflow.observability.tracing` (the ``otel`` extra); this module imports
nothing of it.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from .batch import Batch

#: The modules ``settings.tracing: otlp`` needs (the ``otel`` extra).
OTEL_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")


class BatchTracer(ABC):
    """Opens one span per batch per stage and carries the trace from stage to stage in `Batch.trace`."""

    @abstractmethod
    async def read(self, stage: str, read: Callable[[], Awaitable[Batch | None]]) -> Batch | None:
        """``read()`` of source ``stage``, traced; the batch it returns carries the read's span."""

    @abstractmethod
    async def process(self, stage: str, batch: Batch,
                      process: Callable[[Batch], Awaitable[Batch | list[Batch] | None]]) -> Batch | list[Batch] | None:
        """``process(batch)`` of transform ``stage``, traced; its output batches carry the stage's span."""

    @abstractmethod
    async def write(self, stage: str, batch: Batch, write: Callable[[Batch], Awaitable[None]]) -> None:
        """``write(...)`` of sink ``stage``, traced: it is given a `Batch.derive` of ``batch`` whose
        messages carry the write's span in their headers, so the records it writes continue the trace."""

    @abstractmethod
    async def close(self) -> None:
        """Export what is still buffered; called once when the run ends."""


def missing_tracing_modules() -> list[str]:
    """The modules of the ``otel`` extra that cannot be imported here (empty: tracing can run)."""
    missing = []
    for name in OTEL_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or blocked (None in sys.modules)
            found = False
        if not found:
            missing.append(name)
    return missing


def tracer_for(tracing: str, pipeline: str) -> BatchTracer | None:
    """The tracer ``settings.tracing`` asks for: None when off, or when ``OTEL_SDK_DISABLED`` is true."""
    if tracing == "off" or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    from ..observability.tracing import otlp_tracer  # the otel extra, checked by the settings

    return otlp_tracer(pipeline)
