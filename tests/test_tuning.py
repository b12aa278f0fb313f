"""Process tuning of the runner: GC threshold raised during a run and restored, switch to turn it off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core import tuning
from streamflow.core.batch import Batch


class ThresholdSink(MemorySink):
    """Records the GC threshold seen while the pipeline runs."""

    seen: tuple[int, int, int] | None = None

    async def write(self, batch: Batch) -> None:
        ThresholdSink.seen = gc.get_threshold()
        await super().write(batch)


@pytest.fixture(autouse=True)
def default_threshold() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_gc_threshold_is_raised_during_a_run_and_restored() -> None:
    out = ThresholdSink()
    Pipeline("t").source(MemorySource(values=list(range(10)))).sink(out).run(handle_signals=False)
    assert out.seen == (tuning.GC_GEN0_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    assert out.values == list(range(10))


def test_switch_leaves_the_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tuning.ENV_SWITCH, "0")
    out = ThresholdSink()
    Pipeline("t").source(MemorySource(values=[1])).sink(out).run(handle_signals=False)
    assert out.seen == (700, 10, 10)


def test_a_higher_user_threshold_is_kept() -> None:
    gc.set_threshold(500_000, 10, 10)
    out = ThresholdSink()
    Pipeline("t").source(MemorySource(values=[1])).sink(out).run(handle_signals=False)
    assert out.seen == (500_000, 10, 10)
    assert gc.get_threshold() == (500_000, 10, 10)
