"""Chains: consecutive compute-only transforms run in one task, each batch through all of them at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.batch import Batch
from streamflow.core.loops import chains
from streamflow.core.runner import EXIT_FAILED, EXIT_OK, Runner
from streamflow.core.stage import Transform, TransformConfig
from streamflow.transforms.functions import Filter, Map


class HoldAll(Transform[TransformConfig]):
    """Compute-only, but holds every batch back until the end of the stream."""

    type_name = "hold_all"

    def setup(self) -> None:
        self.held: list[Batch] = []

    @property
    def cpu_only(self) -> bool:
        return True

    async def process(self, batch: Batch) -> None:
        self.held.append(batch)

    async def flush(self) -> list[Batch]:
        held, self.held = self.held, []
        return held


class Ticking(HoldAll):
    """Compute-only, with a timer: it keeps a task of its own."""

    tick_interval = 0.5


async def later(value: Any) -> Any:
    return value


def test_consecutive_compute_only_stages_share_a_task_and_keep_their_own_counters() -> None:
    src, out = MemorySource(values=list(range(100)), batch_size=10), MemorySink(name="out")
    p = (Pipeline("c").source(src).map(lambda v: v * 2, name="double").filter(lambda v: v % 4 == 0, name="even")
         .map(later, name="wait").map(lambda v: v + 1, name="inc").sink(out))
    assert [[t.name for t in c] for c in chains(p.transforms)] == [["double", "even"], ["wait"], ["inc"]]
    runner = Runner(p, handle_signals=False)
    assert [ch.name for ch in runner.channels] == ["sources->double", "even->wait", "wait->inc", "->out"]
    result = asyncio.run(runner.run())
    assert result.exit_code == EXIT_OK
    assert out.values == [v * 2 + 1 for v in range(100) if v % 2 == 0]
    stats = runner.stats
    assert (stats["double"].events_in, stats["double"].events_out) == (100, 100)
    assert (stats["even"].events_in, stats["even"].events_out, stats["even"].filtered) == (100, 50, 50)
    assert (stats["inc"].events_in, stats["inc"].batches_in) == (50, 10)
    assert src.committed == {0: 100}


def test_a_chain_flushes_each_stage_through_the_stages_after_it() -> None:
    src, out = MemorySource(values=list(range(30)), batch_size=7), MemorySink()
    p = Pipeline("c").source(src).transform(HoldAll(name="hold")).map(lambda v: -v, name="neg").sink(out)
    assert [[t.name for t in c] for c in chains(p.transforms)] == [["hold", "neg"]]
    result = p.run(handle_signals=False)
    assert result.exit_code == EXIT_OK
    assert out.values == [-v for v in range(30)]  # held to the end, then through `neg`
    assert src.committed == {0: 30}


def test_stages_that_wait_tick_or_run_concurrently_keep_a_task_of_their_own() -> None:
    stages: list[Transform[Any]] = [
        Map(fn=lambda v: v, name="a"), Map(fn=later, concurrency=4, name="async"), Filter(fn=bool, name="b"),
        Ticking(name="tick"), Map(fn=lambda v: v, name="c"), Filter(fn=bool, name="d")]
    assert [[t.name for t in c] for c in chains(stages)] == [["a"], ["async"], ["b"], ["tick"], ["c", "d"]]


def test_the_graph_marks_chained_stages() -> None:
    p = (Pipeline("g").source(MemorySource(values=[])).map(lambda v: v, name="a").filter(bool, name="b")
         .map(later, name="w").sink(MemorySink()))
    text = p.graph()
    assert "s0 -->|queue 1 batch / 20000 events| t1" in text
    assert "t1 -->|chained| t2" in text
    assert "t2 -->|queue 1 batch / 20000 events| t3" in text


class CrashOnThird(HoldAll):
    """Compute-only; raises (outside any error policy) on its third batch."""

    async def process(self, batch: Batch) -> Batch:
        self.held.append(batch)
        if len(self.held) == 3:
            raise RuntimeError("stage bug")
        return batch


def test_a_stage_that_crashes_inside_a_chain_fails_the_run_and_is_named(caplog: pytest.LogCaptureFixture) -> None:
    src, out = MemorySource(values=list(range(50)), batch_size=5), MemorySink()
    p = (Pipeline("c", channel={"max_batches": 1}).source(src).map(lambda v: v, name="first")
         .transform(CrashOnThird(name="crash")).sink(out))
    result = p.run(handle_signals=False)
    assert result.exit_code == EXIT_FAILED and "stage bug" in result.reason
    assert "transform:first+crash crashed" in caplog.text and "raised by stage 'crash'" in caplog.text
    assert src.committed.get(0, 0) <= 10  # nothing past the batches written before the crash
