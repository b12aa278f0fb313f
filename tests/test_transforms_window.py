"""window: tumbling windows by event or processing time, aggregations, and held acks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from held_acks import StepSource, WatermarkSink
from pydantic import ValidationError

from streamflow import Batch, Message, Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.stage import StageContext
from streamflow.core.stats import StageStats
from streamflow.transforms.window import AGGREGATIONS, Window


def run(values: list[Any], batch_size: int, dead_letter: MemorySink | None = None,
        **options: Any) -> tuple[WatermarkSink, MemorySource, Any]:
    source = MemorySource(values=values, batch_size=batch_size)
    sink = WatermarkSink(source)
    p = Pipeline("t").source(source).transform("window", **options).sink(sink)
    if dead_letter is not None:
        p.dead_letter(dead_letter)
    result = p.run(handle_signals=False)
    return sink, source, result


def stats_of(result: Any) -> StageStats:
    return next(s for s in result.stats if s.name == "window")


def w(start: int, end: int, **fields: Any) -> dict[str, Any]:
    return {"window_start": start, "window_end": end, **fields}


AGGS = {"count": None, "total": {"sum": "amount"}, "biggest": {"max": "amount"}, "avg": {"mean": "amount"}}


def test_event_time_windows_per_key_hold_acks_until_written() -> None:
    events = [
        {"t": 1, "user": "a", "amount": 5}, {"t": 3, "user": "b", "amount": 2},     # batch -> 2
        {"t": 7, "user": "a", "amount": 1}, {"t": 12, "user": "a", "amount": 4},    # batch -> 4, closes [0,10)
        {"t": 15, "user": "b", "amount": 3}, {"t": 4, "user": "a", "amount": 100},  # batch -> 6, 2nd is late
        {"t": 31, "user": "a", "amount": 6},                                        # batch -> 7, closes [10,20)
    ]
    sink, source, result = run(events, batch_size=2, size=10, time_field="t", key="user", aggregate=AGGS)
    assert result.exit_code == 0
    assert sink.writes == [
        ([w(0, 10, key="a", count=2, total=6, biggest=5, avg=3.0),
          w(0, 10, key="b", count=1, total=2, biggest=2, avg=2.0)], None),
        # the batch ending at 4 also fed the open window [10,20) of a: the watermark stays at 2
        ([w(10, 20, key="a", count=1, total=4, biggest=4, avg=4.0),
          w(10, 20, key="b", count=1, total=3, biggest=3, avg=3.0)], 2),
        ([w(30, 40, key="a", count=1, total=6, biggest=6, avg=6.0)], 6),  # flushed at end of stream
    ]
    assert [m.key for m in sink.messages] == ["a", "b", "a", "b", "a"]
    assert stats_of(result).filtered == 1  # the late event
    assert source.committed == {0: 7}


def test_allowed_lateness_keeps_windows_open() -> None:
    events = [{"t": t} for t in (1, 12, 4, 16, 3)]
    sink, _, result = run(events, batch_size=1, size=10, time_field="t", allowed_lateness=5,
                          aggregate={"n": "count"})
    # 4 arrives after 12 but within the lateness; 16 closes [0,10); then 3 is late
    assert [v for vs, _ in sink.writes for v in vs] == [w(0, 10, n=2), w(10, 20, n=2)]
    assert stats_of(result).filtered == 1


def test_late_events_can_go_to_the_error_policy() -> None:
    dlq = MemorySink()
    events = [{"t": 1}, {"t": 25}, {"t": 2}]
    sink, source, result = run(events, batch_size=1, size=10, time_field="t", aggregate={"count": None},
                               late="error", on_error="dead_letter", dead_letter=dlq)
    assert [v for vs, _ in sink.writes for v in vs] == [w(0, 10, count=1), w(20, 30, count=1)]
    assert [r["payload"] for r in dlq.values] == [{"t": 2}]
    assert "LateEvent" in dlq.values[0]["error"]
    assert source.committed == {0: 3}


def test_bad_events_go_to_the_error_policy_without_touching_aggregates() -> None:
    events = [{"t": 1, "x": 1}, {"t": "noon", "x": 1}, {"t": 2, "x": "a"}, {"x": 3}, {"t": 3, "x": 2}]
    sink, source, result = run(events, batch_size=10, size=10, time_field="t",
                               aggregate={"count": None, "s": {"sum": "x"}}, on_error="skip")
    # {"t": 2, "x": "a"} fails the sum: it is not counted either
    assert sink.values == [w(0, 10, count=2, s=3)]
    assert stats_of(result).skipped == 3
    assert source.committed == {0: 5}


def test_missing_fields_are_ignored_by_field_aggregations() -> None:
    events = [{"t": 1, "a": 5}, {"t": 2}, {"t": 3, "a": None}]
    sink, _, _ = run(events, batch_size=10, size=10, time_field="t",
                     aggregate={"events": "count", "with_a": {"count": "a"}, "lo": {"min": "a"},
                                "avg": {"mean": "a"}, "none_avg": {"mean": "b"}, "none_max": {"max": "b"}})
    assert sink.values == [w(0, 10, events=3, with_a=1, lo=5, avg=5.0, none_avg=None, none_max=None)]


def test_user_function_receives_the_windows_values() -> None:
    events = [{"t": t, "id": i} for i, t in enumerate([1, 2, 11, 12, 13])]
    sink, _, _ = run(events, batch_size=2, size=10, time_field="t", aggregate={"count": None},
                     fn=lambda values: {"ids": [v["id"] for v in values]})
    assert sink.values == [w(0, 10, count=2, ids=[0, 1]), w(10, 20, count=3, ids=[2, 3, 4])]
    sink, _, _ = run(events, batch_size=2, size=10, time_field="t", fn=len)
    assert sink.values == [w(0, 10, result=2), w(10, 20, result=3)]


def test_async_user_function() -> None:
    async def total(values: list[Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"sum": sum(v["t"] for v in values)}

    sink, _, _ = run([{"t": 1}, {"t": 2}], batch_size=1, size=10, time_field="t", fn=total)
    assert sink.values == [w(0, 10, sum=3)]


def test_user_function_failure_dead_letters_the_window() -> None:
    def broken(values: list[Any]) -> Any:
        if len(values) == 2:
            raise ValueError("no pairs")
        return {}

    dlq = MemorySink()
    events = [{"t": 1}, {"t": 2}, {"t": 11}]
    sink, source, result = run(events, batch_size=1, size=10, time_field="t", fn=broken,
                               on_error="dead_letter", dead_letter=dlq)
    assert sink.values == [w(10, 20)]
    assert [r["payload"] for r in dlq.values] == [w(0, 10)]
    assert dlq.values[0]["error"] == "ValueError: no pairs"
    assert source.committed == {0: 3}


def test_processing_time_window_closes_on_a_timer() -> None:
    # the source waits for a write after its first batch: only the timer can close that window
    source = StepSource([[{"a": 1}, {"a": 2}], [{"a": 3}]], after=[0, 1])
    sink = source.sink = WatermarkSink(source)
    result = Pipeline("t").source(source).transform("window", size=0.05, aggregate={"count": None}) \
        .sink(sink).run(handle_signals=False)
    assert result.exit_code == 0
    (first, mark1), (second, mark2) = sink.writes
    assert [v["count"] for v in first + second] == [2, 1]
    assert (mark1, mark2) == (None, 2)
    assert second[0]["window_start"] >= first[0]["window_end"]
    assert first[0]["window_end"] - first[0]["window_start"] == pytest.approx(0.05)
    assert source.committed == {0: 3}


async def test_processing_time_uses_the_clock() -> None:
    t = Window(size=10, key="k", aggregate={"count": None})
    now = [100.0]
    t.clock = lambda: now[0]
    await t.open(StageContext("p", "window", StageStats("window", "transform")))
    assert await t.process(Batch([Message({"k": "x"}), Message({"k": "y"}), Message({"k": "x"})])) is None
    now[0] = 109.9
    assert await t.tick() is None
    assert await t.process(Batch([Message({"k": "x"})])) is None
    now[0] = 110.0
    out = await t.tick()
    assert isinstance(out, Batch)
    assert [m.value for m in out.messages] == [
        {"window_start": 100.0, "window_end": 110.0, "key": "x", "count": 3},
        {"window_start": 100.0, "window_end": 110.0, "key": "y", "count": 1},
    ]
    assert await t.flush() == []


def test_aggregations_are_a_registry() -> None:
    assert {"count", "sum", "min", "max", "mean"} <= set(AGGREGATIONS)


@pytest.mark.parametrize("options, message", [
    ({"size": 10}, "needs `aggregate`, `fn` or both"),
    ({"size": 10, "aggregate": {"x": {"median": "a"}}}, "unknown aggregation 'median'"),
    ({"size": 10, "aggregate": {"total": "sum"}}, "sum needs a field"),
    ({"size": 10, "aggregate": {"key": "count"}}, "reserved"),
    ({"size": 10, "aggregate": {"x": {"sum": "a", "max": "b"}}}, "expected null"),
    ({"size": 0, "aggregate": {"count": None}}, "greater than 0"),
    ({"size": 10, "aggregate": {"count": None}, "allowed_lateness": 5}, "event time"),
    ({"size": 10, "aggregate": {"count": None}, "key": "a..b"}, "invalid field path"),
])
def test_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Window(**options)
