"""batch and unbatch, and that held events keep their source positions uncommitted."""

from __future__ import annotations

from typing import Any

import pytest
from held_acks import StepSource, WatermarkSink
from pydantic import ValidationError

from streamflow import Batch, Message, Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.transforms.batching import BatchEvents


def test_groups_by_size_and_holds_acks_until_emitted() -> None:
    source = MemorySource(values=list(range(12)), batch_size=3)
    sink = WatermarkSink(source)
    result = Pipeline("t").source(source).transform("batch", size=5).sink(sink).run(handle_signals=False)
    assert result.exit_code == 0
    # the watermark at each write never passes an event still held in a partial group
    assert sink.writes == [
        ([[0, 1, 2, 3, 4]], None),  # events 0-4 came in source batches ending at 3 and 6
        ([[5, 6, 7, 8, 9]], 3),     # 5 is held from the batch ending at 6
        ([[10, 11]], 9),            # end of stream: the partial group is flushed
    ]
    assert source.committed == {0: 12}


def test_one_input_batch_can_fill_several_groups() -> None:
    source = MemorySource(values=list(range(7)), batch_size=7)
    sink = WatermarkSink(source)
    Pipeline("t").source(source).transform("batch", size=2).sink(sink).run(handle_signals=False)
    assert sink.writes == [([[0, 1], [2, 3], [4, 5]], None), ([[6]], None)]
    assert source.committed == {0: 7}


def test_group_event_keeps_the_first_events_metadata() -> None:
    source = MemorySource(values=["a", "b", "c"], batch_size=2)
    sink = MemorySink()
    Pipeline("t").source(source).transform("batch", size=3).sink(sink).run(handle_signals=False)
    (m,) = sink.messages
    assert (m.value, m.topic, m.partition, m.offset) == (["a", "b", "c"], "memory", 0, 0)


def test_several_partitions_are_all_acknowledged() -> None:
    source = MemorySource(values=list(range(10)), batch_size=2, partitions=2)
    sink = MemorySink()
    Pipeline("t").source(source).transform("batch", size=3).sink(sink).run(handle_signals=False)
    assert sorted(v for group in sink.values for v in group) == list(range(10))
    assert all(len(g) == 3 for g in sink.values[:-1])
    assert source.committed == {0: 9, 1: 10}  # last offset + 1 per partition


def test_timeout_emits_a_partial_group_while_the_source_is_idle() -> None:
    # the source sends [1, 2, 3], then waits for a write: only the timeout (a tick) can produce it
    source = StepSource([[1, 2, 3], [4, 5]], after=[0, 1])
    sink = source.sink = WatermarkSink(source)
    result = Pipeline("t").source(source).transform("batch", size=10, timeout=0.05).sink(sink) \
        .run(handle_signals=False)
    assert result.exit_code == 0
    assert sink.writes == [([[1, 2, 3]], None), ([[4, 5]], 3)]
    assert source.committed == {0: 5}


async def test_timeout_checked_on_tick_and_next_batch() -> None:
    t = BatchEvents(size=10, timeout=5)
    now = [0.0]
    t.clock = lambda: now[0]
    assert t.tick_interval is not None and t.tick_interval <= 5
    assert await t.process(Batch([Message(1)])) is None
    now[0] = 4.0
    assert await t.tick() is None
    assert await t.process(Batch([Message(2)])) is None
    now[0] = 5.0
    out = await t.tick()
    assert isinstance(out, Batch) and out.messages[0].value == [1, 2]
    assert await t.tick() is None
    assert await t.process(Batch([Message(3)])) is None  # the new group's clock starts now
    now[0] = 9.0
    assert await t.tick() is None
    now[0] = 11.0
    out = await t.process(Batch([Message(4)]))
    assert isinstance(out, Batch) and out.messages[0].value == [3, 4]
    assert await t.flush() == []


def test_unbatch_splits_lists_and_skips_others() -> None:
    source = MemorySource(values=[[1, 2], [], "x", [3]], batch_size=10)
    sink = MemorySink()
    result = Pipeline("t").source(source).transform("unbatch", on_error="skip").sink(sink) \
        .run(handle_signals=False)
    assert sink.values == [1, 2, 3]
    assert next(s for s in result.stats if s.name == "unbatch").skipped == 1
    assert source.committed == {0: 4}


def test_batch_then_unbatch_round_trip() -> None:
    source = MemorySource(values=list(range(23)), batch_size=4)
    sink = MemorySink()
    Pipeline("t").source(source).transform("batch", size=5).transform("unbatch").sink(sink) \
        .run(handle_signals=False)
    assert sink.values == list(range(23))
    assert source.committed == {0: 23}


@pytest.mark.parametrize("options", [{}, {"size": 0}, {"size": 2, "timeout": 0}, {"size": 2, "x": 1}])
def test_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BatchEvents(**options)
