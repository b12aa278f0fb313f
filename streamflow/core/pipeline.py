"""`Pipeline`: the graph of sources, transforms and sinks, built by a fluent Python API.

YAML configs are parsed into the same object (see `streamflow.config`), so
there is one graph and one engine whichever way a pipeline is written.

This module describes a pipeline; it does not run or draw one. `Pipeline.run`
and `Pipeline.graph` delegate to an `Engine`, which `streamflow.core` sets to
`streamflow.core.engine.LocalEngine` (the `Runner` and the Mermaid renderer).
Those import this module, never the reverse, so the graph, the runner and the
renderer form no import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from .errors import ConfigError
from .refs import resolve
from .registry import SINKS, SOURCES, TRANSFORMS, Lookup
from .result import RunResult
from .settings import ChannelSettings, HttpSettings, PipelineSettings
from .stage import Component, Sink, Source, Transform

__all__ = ["ChannelSettings", "Engine", "HttpSettings", "Pipeline", "PipelineSettings", "SinkRoute"]

S = TypeVar("S", bound=Component[Any])


@dataclass
class SinkRoute:
    """A sink and the predicate choosing which events it receives (None: all of them)."""

    sink: Sink[Any]
    when: Callable[[Any], bool] | None = None


class Engine(Protocol):
    """What runs and draws a pipeline: the engine behind `Pipeline.run` and `Pipeline.graph`."""

    def run(self, pipeline: Pipeline, /, **options: Any) -> RunResult:
        """Run ``pipeline`` to completion on a fresh event loop."""
        ...

    def graph(self, pipeline: Pipeline, /) -> str:
        """A Mermaid flowchart of ``pipeline``."""
        ...


def _build(registry: Lookup[type[S]], item: S | str, options: dict[str, Any], base: type) -> S:
    """``item`` itself (checked to be a ``base``, the abstract kind of ``S``), or a new component
    of the type ``registry`` names ``item``, built from ``options``."""
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
        self.sources: list[Source[Any]] = []
        self.transforms: list[Transform[Any]] = []
        self.sinks: list[SinkRoute] = []
        self.dead_letter_sink: Sink[Any] | None = None

    # -- building -------------------------------------------------------
    def _named(self, comp: S) -> S:
        """Give an unnamed stage a unique default name (``map``, ``map_2`` …)."""
        if comp.config.name is None:
            taken = {s.name for s in self.stages()}
            base, i = comp.name, 2
            while comp.name in taken:
                comp.name = f"{base}_{i}"
                i += 1
        return comp

    def source(self, source: Source[Any] | str, **options: Any) -> Pipeline:
        """Add a source (several sources are merged into one stream)."""
        self.sources.append(self._named(_build(SOURCES, source, options, Source)))
        return self

    def transform(self, transform: Transform[Any] | str, **options: Any) -> Pipeline:
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

    def sink(self, sink: Sink[Any] | str, when: Callable[[Any], bool] | str | None = None,
             **options: Any) -> Pipeline:
        """Add a sink. Every sink receives every event (fan-out) unless ``when`` selects some."""
        predicate: Callable[[Any], bool] | None = resolve(when) if isinstance(when, str) else when
        self.sinks.append(SinkRoute(self._named(_build(SINKS, sink, options, Sink)), predicate))
        return self

    def dead_letter(self, sink: Sink[Any] | str, **options: Any) -> Pipeline:
        """Where `dead_letter` error policies send failed events."""
        built = _build(SINKS, sink, options, Sink)
        if built.config.name is None:
            built.name = "dead_letter"
        self.dead_letter_sink = self._named(built)
        return self

    # -- checking ---------------------------------------------------------
    def stages(self) -> list[Component[Any]]:
        """Every stage: sources, transforms, sinks, then the dead-letter sink."""
        out: list[Component[Any]] = [*self.sources, *self.transforms, *(r.sink for r in self.sinks)]
        if self.dead_letter_sink is not None:
            out.append(self.dead_letter_sink)
        return out

    def validate(self) -> Pipeline:
        """Check the graph is runnable; raises `ConfigError`. Does no I/O."""
        if not self.sources:
            raise ConfigError(f"pipeline {self.name!r} has no source")
        if not self.sinks:
            raise ConfigError(f"pipeline {self.name!r} has no sink")
        seen: dict[str, Component[Any]] = {}
        for stage in self.stages():
            other = seen.setdefault(stage.name, stage)
            if other is not stage:
                both = f"two {stage.kind}s" if other.kind == stage.kind else f"a {other.kind} and a {stage.kind}"
                raise ConfigError(f"{both} are named {stage.name!r}; give them distinct `name`s")
        self._check_partitioned_input()
        self._check_side_outputs()
        if self.settings.delivery == "exactly_once":
            self._check_exactly_once()
        if self.dead_letter_sink is None:
            for stage in self.stages():
                if any(p.uses_dead_letter() for p in stage.error_policies()):
                    raise ConfigError(f"stage {stage.name!r} uses on_error dead_letter but the pipeline "
                                      "has no dead_letter sink")
        return self

    def partitioned_input(self) -> bool:
        """Whether the input is one partitioned source (Kafka, one topic): what keyed state follows."""
        return len(self.sources) == 1 and self.sources[0].partitioned_input_problem() is None

    def side_output_sinks(self) -> set[str]:
        """Names of the sinks fed by a stage directly (`Transform.side_outputs`), not by the router."""
        return {name for t in self.transforms for name in t.side_outputs()}

    def _check_side_outputs(self) -> None:
        sinks = {r.sink.name: r for r in self.sinks}
        for t in self.transforms:
            for name in t.side_outputs():
                route = sinks.get(name)
                if route is None:
                    raise ConfigError(f"stage {t.name!r} writes to sink {name!r}, but the pipeline has no "
                                      f"sink of that name; sinks: {', '.join(sinks)}")
                if route.when is not None:
                    raise ConfigError(f"sink {name!r} is fed by stage {t.name!r} directly, so it takes no "
                                      "`when`")

    def _check_partitioned_input(self) -> None:
        """A stage with keyed state needs one partitioned input: its state is partitioned like it."""
        for t in self.transforms:
            if t.partition_listener() is None or not t.needs_partitioned_input:
                continue
            if len(self.sources) != 1:
                raise ConfigError(f"stage {t.name!r} keeps keyed state, which needs exactly one (Kafka) "
                                  f"source; the pipeline has {len(self.sources)}")
            problem = self.sources[0].partitioned_input_problem(t.input_topics)
            if problem is not None:
                raise ConfigError(f"stage {t.name!r} keeps keyed state, which is partitioned like its input "
                                  f"and restored from a Kafka changelog, but source "
                                  f"{self.sources[0].name!r} cannot feed it: {problem}")

    def _check_exactly_once(self) -> None:
        """``delivery: exactly_once`` needs every source and sink in one Kafka transaction: one cluster."""
        ends: list[Source[Any] | Sink[Any]] = [*self.sources, *(r.sink for r in self.sinks)]
        if self.dead_letter_sink is not None:
            ends.append(self.dead_letter_sink)
        for end in ends:
            problem = end.exactly_once_problem()
            if problem is not None:
                role = "dead-letter sink" if end is self.dead_letter_sink else end.kind
                raise ConfigError(f"settings.delivery is exactly_once, but {role} {end.name!r} "
                                  f"(type {end.type_name}) cannot take part: {problem}")
        clusters = {str(getattr(end.config, "bootstrap_servers", "")) for end in ends}
        if len(clusters) > 1:
            raise ConfigError("settings.delivery is exactly_once, but the sources and sinks name different "
                              f"bootstrap_servers ({', '.join(sorted(clusters))}): a transaction spans one "
                              "Kafka cluster")

    # -- running and drawing (by the engine) -----------------------------
    #: Runs and draws pipelines; `streamflow.core` sets it to `LocalEngine` when it is imported.
    engine: ClassVar[Engine]

    def run(self, **options: Any) -> RunResult:
        """Run to completion (or until a signal) on a fresh event loop; returns a `RunResult`.

        ``options`` are `Runner`'s: ``handle_signals``, ``watchers``, ``hooks``, ``tracer``.
        """
        return self.engine.run(self, **options)

    def graph(self) -> str:
        """Mermaid flowchart of the stages and the channels between them."""
        return self.engine.graph(self)
