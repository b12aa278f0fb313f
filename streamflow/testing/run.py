"""Running one test case: the pipeline with in-memory sources and sinks, and what came out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config.errors import InvalidConfig
from ..connectors.memory import MemorySink, MemorySource
from ..core.pipeline import Pipeline
from ..core.result import RunResult
from ..core.stage import Transform
from ..loading import load
from .spec import TestCase

#: Name of the sink that receives every event leaving the tested stages.
OUTPUT = "test.output"


@dataclass
class Outcome:
    """What a case's run produced."""

    result: RunResult
    output: list[Any]
    sinks: dict[str, list[Any]] = field(default_factory=dict)
    dead_letters: list[Any] = field(default_factory=list)

    @property
    def filtered(self) -> int:
        """Events the transforms dropped on purpose."""
        return sum(s.filtered for s in self.result.stats if s.kind == "transform")


def _stages(test: TestCase, pipeline: Pipeline) -> list[Transform[Any]]:
    """The transforms the case runs: all of them, or the one it names."""
    wanted = test.case.stage
    if wanted is None:
        return pipeline.transforms
    for t in pipeline.transforms:
        if t.name == wanted:
            return [t]
    names = ", ".join(t.name for t in pipeline.transforms) or "none"
    raise InvalidConfig([test.doc.issue((*test.path, "stage"),
                                        f"{test.pipeline} has no stage {wanted!r}; its stages: {names}")])


def run_case(test: TestCase) -> Outcome:
    """Load the case's pipeline afresh (no state shared between cases) and run it on the input.

    Sources become one in-memory source of ``input``; each sink becomes an
    in-memory sink of the same name and ``when``; one more collects every
    output event; the dead-letter sink is in memory too; no ops server, no tracing. Raises
    `ConfigError` for a pipeline that does not load or a stage that does not exist.
    """
    real = load(test.pipeline)
    stages = _stages(test, real)
    settings = real.settings.model_copy(update={"http": None, "tracing": "off"})
    pipeline = Pipeline(real.name, **settings.model_dump())
    pipeline.source(MemorySource(name="test.input", values=test.case.input,
                                 batch_size=test.case.batch_size))
    for stage in stages:
        pipeline.transform(stage)
    output = MemorySink(name=OUTPUT)
    pipeline.sink(output)
    sinks: dict[str, MemorySink] = {}
    if test.case.stage is None:
        for route in real.sinks:
            sinks[route.sink.name] = MemorySink(name=route.sink.name)
            pipeline.sink(sinks[route.sink.name], when=route.when)
    dead = MemorySink(name=real.dead_letter_sink.name) if real.dead_letter_sink is not None else None
    if dead is not None:
        pipeline.dead_letter(dead)
    result = pipeline.validate().run(handle_signals=False)
    return Outcome(result, output.values,
                   {name: s.values for name, s in sinks.items()}, dead.values if dead is not None else [])
