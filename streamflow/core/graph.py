"""Mermaid rendering of a pipeline's stages and the channels between them."""

from __future__ import annotations

from typing import Any

from .loops import chains
from .pipeline import Pipeline
from .stage import Transform


def _node(node_id: str, label: str, shape: str = "box") -> str:
    label = label.replace('"', "'")
    if shape == "source":  # stadium
        return f'    {node_id}(["{label}"])'
    if shape == "sink":  # cylinder
        return f'    {node_id}[("{label}")]'
    if shape == "route":
        return f'    {node_id}{{"{label}"}}'
    return f'    {node_id}["{label}"]'


def _transform_label(t: Transform[Any]) -> str:
    label = t.describe()
    if t.concurrency > 1:
        label += f" ×{t.concurrency}{'' if t.ordered else ' unordered'}"
    policies = [p.policy for p in t.error_policies() if p.policy != "fail"]
    if policies:
        label += f" · on_error {policies[0]}"
    return label


class _Flowchart:
    """The lines of one flowchart, with a stable node id per stage object."""

    def __init__(self, pipeline: Pipeline) -> None:
        cap = pipeline.settings.channel
        batches = "1 batch" if cap.max_batches == 1 else f"{cap.max_batches} batches"
        self.queue = f"|queue {batches} / {cap.max_events} events|"
        self.lines = ["flowchart LR"]
        self.ids: dict[int, str] = {}

    def nid(self, obj: object, prefix: str) -> str:
        return self.ids.setdefault(id(obj), f"{prefix}{len(self.ids)}")

    def edges(self, sources: list[str], target: str, label: str) -> None:
        self.lines += [f"    {p} -->{label} {target}" for p in sources]


def mermaid(pipeline: Pipeline) -> str:
    """A Mermaid ``flowchart LR`` of ``pipeline``; edges are labelled with channel capacities, or
    "chained" between stages that run in one task (`loops.chains`)."""
    chart = _Flowchart(pipeline)
    chart.lines += [_node(chart.nid(src, "s"), src.describe(), "source") for src in pipeline.sources]
    prev = [chart.nid(s, "s") for s in pipeline.sources]
    for chain in chains(pipeline.transforms):
        for i, t in enumerate(chain):
            chart.lines.append(_node(chart.nid(t, "t"), _transform_label(t)))
            chart.edges(prev, chart.nid(t, "t"), chart.queue if i == 0 else "|chained|")
            prev = [chart.nid(t, "t")]
    _sinks(chart, pipeline, prev)
    _dead_letter(chart, pipeline)
    return "\n".join(chart.lines) + "\n"


def _sinks(chart: _Flowchart, pipeline: Pipeline, prev: list[str]) -> None:
    fan = len(pipeline.sinks) > 1 or any(r.when for r in pipeline.sinks)
    if fan:
        chart.lines.append(_node("route", "route", "route"))
        chart.edges(prev, "route", chart.queue)
        prev = ["route"]
    for r in pipeline.sinks:
        sid = chart.nid(r.sink, "k")
        chart.lines.append(_node(sid, r.sink.describe(), "sink"))
        label = ""
        if r.when is not None:
            label = f"|when {getattr(r.when, '__name__', 'predicate')}|"
        elif not fan:
            label = chart.queue
        chart.edges(prev, sid, label)


def _dead_letter(chart: _Flowchart, pipeline: Pipeline) -> None:
    if pipeline.dead_letter_sink is None:
        return
    did = chart.nid(pipeline.dead_letter_sink, "d")
    chart.lines.append(_node(did, f"dead letter: {pipeline.dead_letter_sink.describe()}", "sink"))
    for stage in [*pipeline.sources, *pipeline.transforms]:
        if any(p.uses_dead_letter() for p in stage.error_policies()):
            chart.lines.append(f"    {chart.nid(stage, 'x')} -.->|on_error| {did}")
