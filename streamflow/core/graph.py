"""Mermaid rendering of a pipeline's stages and the channels between them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import Pipeline


def _node(node_id: str, label: str, shape: str = "box") -> str:
    label = label.replace('"', "'")
    if shape == "source":  # stadium
        return f'    {node_id}(["{label}"])'
    if shape == "sink":  # cylinder
        return f'    {node_id}[("{label}")]'
    if shape == "route":
        return f'    {node_id}{{"{label}"}}'
    return f'    {node_id}["{label}"]'


def mermaid(pipeline: Pipeline) -> str:
    """A Mermaid ``flowchart LR`` of ``pipeline``; edges are labelled with channel capacities."""
    cap = pipeline.settings.channel
    queue = f"|queue {cap.max_batches} batches / {cap.max_events} events|"
    lines = ["flowchart LR"]
    ids: dict[int, str] = {}

    def nid(obj: object, prefix: str) -> str:
        return ids.setdefault(id(obj), f"{prefix}{len(ids)}")

    for src in pipeline.sources:
        lines.append(_node(nid(src, "s"), f"{src.describe()}", "source"))
    prev = [nid(s, "s") for s in pipeline.sources]
    for t in pipeline.transforms:
        label = t.describe()
        if t.concurrency > 1:
            label += f" ×{t.concurrency}{'' if t.ordered else ' unordered'}"
        policies = [p.policy for p in t.error_policies() if p.policy != "fail"]
        if policies:
            label += f" · on_error {policies[0]}"
        lines.append(_node(nid(t, "t"), label))
        for p in prev:
            lines.append(f"    {p} -->{queue} {nid(t, 't')}")
        prev = [nid(t, "t")]
    fan = len(pipeline.sinks) > 1 or any(r.when for r in pipeline.sinks)
    if fan:
        lines.append(_node("route", "route", "route"))
        for p in prev:
            lines.append(f"    {p} -->{queue} route")
        prev = ["route"]
    for r in pipeline.sinks:
        sid = nid(r.sink, "k")
        lines.append(_node(sid, r.sink.describe(), "sink"))
        label = ""
        if r.when is not None:
            label = f"|when {getattr(r.when, '__name__', 'predicate')}|"
        elif not fan:
            label = queue
        for p in prev:
            lines.append(f"    {p} -->{label} {sid}")
    if pipeline.dead_letter_sink is not None:
        did = nid(pipeline.dead_letter_sink, "d")
        lines.append(_node(did, f"dead letter: {pipeline.dead_letter_sink.describe()}", "sink"))
        for stage in [*pipeline.sources, *pipeline.transforms]:
            if any(p.uses_dead_letter() for p in stage.error_policies()):
                lines.append(f"    {nid(stage, 'x')} -.->|on_error| {did}")
    return "\n".join(lines) + "\n"
