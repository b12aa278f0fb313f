"""`Pipeline`: the graph of sources, transforms and sinks, built by a fluent Python API.

YAML configs are parsed into the same object (see `streamflow.config`), so
there is one graph and one engine whichever way a pipeline is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .backoff import Backoff
from .errors import ConfigError
from .registry import SINKS, SOURCES, TRANSFORMS
from .stage import Component, Sink, Source, Transform


class ChannelSettings(BaseModel):
    """Capacity of every channel between two stages (contract 1)."""

    model_config = ConfigDict(extra="forbid")

    max_batches: int = Field(8, ge=1, description="batches a channel holds before put() waits")
    max_events: int = Field(20_000, ge=1, description="events a channel holds before put() waits")


class HttpSettings(BaseModel):
    """The operations HTTP server (/metrics, /healthz, /readyz); off unless configured."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 in a container)")
    port: int = Field(8080, ge=0, le=65535, description="port (0 picks a free one)")


class PipelineSettings(BaseModel):
    """Engine settings of one pipeline."""

    model_config = ConfigDict(extra="forbid")

    shutdown_timeout: float = Field(30.0, gt=0, description="seconds a graceful drain may take")
    commit_interval: float = Field(1.0, gt=0, description="seconds between checkpoint commits")
    channel: ChannelSettings = Field(default_factory=ChannelSettings)
    sink_retry: Backoff = Field(default_factory=Backoff, description=(
        "how a failing sink write is retried (backpressure holds the source meanwhile); "
        "`max_attempts` reached fails the pipeline"))
    http: HttpSettings | None = Field(None, description="serve /metrics, /healthz and /readyz")


@dataclass
class SinkRoute:
    """A sink and the predicate choosing which events it receives (None: all of them)."""

    sink: Sink
    when: Callable[[Any], bool] | None = None


def _build(registry: Any, item: Any, options: dict[str, Any], base: type[Component]) -> Any:
    if isinstance(item, str):
        return registry.get(item)(**options)
    if options:
        raise TypeError("options are only accepted with a type name")
    if not isinstance(item, base):
        raise TypeError(f"expected a {base.__name__} or a registered type name, got {item!r}")
    return item


class Pipeline:
    """A streaming pipeline: sources -> transforms -> sinks, plus a dead-letter sink.

    >>> Pipeline("orders").source("file", path="in.jsonl").filter(is_paid) \\
    ...     .map(enrich, concurrency=8).sink("stdout")
    """

    def __init__(self, name: str = "pipeline", **settings: Any) -> None:
        self.name = name
        self.settings = PipelineSettings(**settings)
        self.sources: list[Source] = []
        self.transforms: list[Transform] = []
        self.sinks: list[SinkRoute] = []
        self.dead_letter_sink: Sink | None = None

    # -- building -------------------------------------------------------
    def _named(self, comp: Any) -> Any:
        """Give an unnamed stage a unique default name (``map``, ``map_2`` …)."""
        if comp.config.name is None:
            taken = {s.name for s in self.stages()}
            base, i = comp.name, 2
            while comp.name in taken:
                comp.name = f"{base}_{i}"
                i += 1
        return comp

    def source(self, source: Source | str, **options: Any) -> Pipeline:
        """Add a source (several sources are merged into one stream)."""
        self.sources.append(self._named(_build(SOURCES, source, options, Source)))
        return self

    def transform(self, transform: Transform | str, **options: Any) -> Pipeline:
        """Append a transform stage, given as an object or a registered type name."""
        self.transforms.append(self._named(_build(TRANSFORMS, transform, options, Transform)))
        return self

    def map(self, fn: Callable[..., Any] | str, **options: Any) -> Pipeline:
        """Replace each event's value by ``fn(value)`` (sync or async)."""
        return self.transform("map", fn=fn, **options)

    def filter(self, fn: Callable[..., Any] | str, **options: Any) -> Pipeline:
        """Keep the events for which ``fn(value)`` is true."""
        return self.transform("filter", fn=fn, **options)

    def flat_map(self, fn: Callable[..., Any] | str, **options: Any) -> Pipeline:
        """Replace each event by the values of the iterable ``fn(value)`` returns."""
        return self.transform("flat_map", fn=fn, **options)

    def parse(self, codec: str = "json", **options: Any) -> Pipeline:
        """Decode raw bytes into values with a codec."""
        return self.transform("parse", codec=codec, **options)

    def __getattr__(self, name: str) -> Callable[..., Pipeline]:
        # Any registered transform type is also a builder method: .dedupe(key="id")
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            TRANSFORMS.get(name)
        except KeyError:
            raise AttributeError(f"Pipeline has no method or transform type {name!r}") from None
        return lambda **options: self.transform(name, **options)

    def sink(self, sink: Sink | str, when: Callable[[Any], bool] | str | None = None,
             **options: Any) -> Pipeline:
        """Add a sink. Every sink receives every event (fan-out) unless ``when`` selects some."""
        from .refs import resolve

        if isinstance(when, str):
            when = resolve(when)
        self.sinks.append(SinkRoute(self._named(_build(SINKS, sink, options, Sink)), when))
        return self

    def dead_letter(self, sink: Sink | str, **options: Any) -> Pipeline:
        """Where `dead_letter` error policies send failed events."""
        sink = _build(SINKS, sink, options, Sink)
        if sink.config.name is None:
            sink.name = "dead_letter"
        self.dead_letter_sink = self._named(sink)
        return self

    # -- checking and running --------------------------------------------
    def stages(self) -> list[Component]:
        out: list[Component] = [*self.sources, *self.transforms, *(r.sink for r in self.sinks)]
        if self.dead_letter_sink is not None:
            out.append(self.dead_letter_sink)
        return out

    def validate(self) -> Pipeline:
        """Check the graph is runnable; raises `ConfigError`. Does no I/O."""
        if not self.sources:
            raise ConfigError(f"pipeline {self.name!r} has no source")
        if not self.sinks:
            raise ConfigError(f"pipeline {self.name!r} has no sink")
        seen: set[str] = set()
        for stage in self.stages():
            if stage.name in seen:
                raise ConfigError(f"two stages are named {stage.name!r}; give them distinct `name`s")
            seen.add(stage.name)
        if self.dead_letter_sink is None:
            for stage in self.stages():
                if any(p.uses_dead_letter() for p in stage.error_policies()):
                    raise ConfigError(f"stage {stage.name!r} uses on_error dead_letter but the pipeline "
                                      "has no dead_letter sink")
        return self

    def run(self, **options: Any) -> Any:
        """Run to completion (or until a signal) on a fresh event loop; returns a `RunResult`."""
        from .runner import run_pipeline

        return run_pipeline(self, **options)

    def graph(self) -> str:
        """Mermaid flowchart of the stages and the channels between them."""
        from .graph import mermaid

        return mermaid(self)
