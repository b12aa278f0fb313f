"""Live progress of a running pipeline on a terminal: a rich table refreshed about twice a second.

`progress` is a runner watcher: ``pipeline.run(watchers=[progress])``. It
only reads ``runner.stats`` (stage counters) and ``runner.channels``, so it
costs the hot path nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from .logging import get_console


class Rates:
    """Events per second out of each stage, from the counter deltas between two ticks."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._at = time.monotonic()
        self.per_stage: dict[str, float] = {}

    def tick(self, stats: dict[str, Any]) -> dict[str, float]:
        now = time.monotonic()
        dt = now - self._at
        if dt > 0:
            self.per_stage = {name: (s.events_out - self._last.get(name, 0)) / dt for name, s in stats.items()}
        self._last = {name: s.events_out for name, s in stats.items()}
        self._at = now
        return self.per_stage


def render(runner: Any, rates: dict[str, float] | None = None) -> RenderableType:
    """The progress view: one row per stage, one per channel."""
    rates = rates or {}
    stages = Table(title=f"{runner.pipeline.name} · {runner.state}", title_justify="left", expand=False)
    for column in ("stage", "kind", "in", "out", "events/s", "errors", "dead-lettered"):
        stages.add_column(column, justify="left" if column in ("stage", "kind") else "right")
    order = {stage.name: i for i, stage in enumerate(runner.pipeline.stages())}
    for name, s in sorted(runner.stats.items(), key=lambda item: order.get(item[0], len(order))):
        events_in = "" if s.kind == "source" else f"{s.events_in:,}"
        stages.add_row(name, s.kind, events_in, f"{s.events_out:,}", f"{rates.get(name, 0.0):,.0f}",
                       f"{s.errors:,}", f"{s.dead_lettered:,}")
    channels = Table(expand=False)
    for column in ("channel", "batches", "events"):
        channels.add_column(column, justify="left" if column == "channel" else "right")
    for ch in runner.channels:
        channels.add_row(ch.name, f"{ch.depth}/{ch.max_batches}", f"{ch.events:,}/{ch.max_events:,}")
    return Group(stages, channels)


async def progress(runner: Any, console: Any = None, interval: float = 0.5) -> None:
    """Watcher showing `render` live until the run ends (the runner cancels it)."""
    from rich.live import Live

    rates = Rates()
    with Live(render(runner), console=console or get_console(), auto_refresh=False,
              redirect_stdout=False, redirect_stderr=False) as live:
        try:
            while True:
                await asyncio.sleep(interval)
                live.update(render(runner, rates.tick(runner.stats)), refresh=True)
        finally:  # the final frame keeps the last measured rates
            live.update(render(runner, rates.per_stage), refresh=True)
