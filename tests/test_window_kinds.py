"""window kinds through a real pipeline: exact results, per-partition watermarks, late events, held acks.

One fixed event set (two partitions, out of order within the lateness, one
late event) runs through each window kind; the expected windows were worked
out by hand from the rules in `streamflow.state.windows`.
"""

from __future__ import annotations

from typing import Any

import pytest
from held_acks import StepSource, WatermarkSink
from pydantic import ValidationError

from streamflow import Batch, Pipeline, Source
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.transforms.aggregations import AGGREGATIONS, Aggregation
from streamflow.transforms.window import Window

# (event time, user); the index is the id. MemorySource(partitions=2, batch_size=2) reads four at a
# time: ids 0, 2 on partition 0 and 1, 3 on partition 1, and so on. With `allowed_lateness: 2` the
# watermark after each batch is min(p0 max, p1 max) - 2: 2, 9, 20, 21. Id 5 (t=3) arrives after
# t=6 and t=12 but within the lateness; id 12 (t=8) comes after the watermark reached 20: late.
EVENTS = [(1, "a"), (2, "b"), (6, "a"), (4, "a"),
          (12, "b"), (3, "a"), (14, "a"), (11, "b"),
          (21, "a"), (5, "b"), (23, "b"), (22, "a"),
          (8, "a"), (25, "b")]


class MarksSink(WatermarkSink):
    """Also records every partition's commit watermark at each write."""

    def __init__(self, source: Source) -> None:
        super().__init__(source)
        self.marks: list[dict[Any, Any]] = []

    async def write(self, batch: Batch) -> None:
        self.marks.append(dict(self.source.tracker.watermarks()))
        await super().write(batch)


def run(dead_letter: MemorySink | None = None, **options: Any) -> tuple[MarksSink, MemorySource, Any]:
    values = [{"t": t, "user": u, "id": i} for i, (t, u) in enumerate(EVENTS)]
    source = MemorySource(values=values, batch_size=2, partitions=2)
    sink = MarksSink(source)
    p = Pipeline("t").source(source).transform(
        "window", time_field="t", allowed_lateness=2, key="user",
        aggregate={"n": "count", "ids": {"collect": "id"}}, **options).sink(sink)
    if dead_letter is not None:
        p.dead_letter(dead_letter)
    return sink, source, p.run(handle_signals=False)


def windows(sink: MarksSink) -> list[list[tuple[str, float, float, list[int]]]]:
    """Per write: (key, start, end, ids) of each window; checks `n` agrees with the ids."""
    out = []
    for values, _ in sink.writes:
        assert all(v["n"] == len(v["ids"]) for v in values)
        out.append([(v["key"], v["window_start"], v["window_end"], v["ids"]) for v in values])
    return out


def filtered(result: Any) -> int:
    return next(s for s in result.stats if s.name == "window").filtered


def test_tumbling() -> None:
    sink, source, result = run(size=10)
    assert windows(sink) == [
        [("a", 0, 10, [0, 2, 3, 5]), ("b", 0, 10, [1, 9]), ("a", 10, 20, [6]), ("b", 10, 20, [4, 7])],
        [("a", 20, 30, [8, 11]), ("b", 20, 30, [10, 13])],  # flushed at the end
    ]
    # nothing is committed before the windows holding it are written; the third batch feeds [20, 30)
    assert sink.marks == [{}, {0: 7, 1: 8}]
    assert source.committed == {0: 13, 1: 14}
    assert filtered(result) == 1  # id 12


def test_hopping() -> None:
    sink, source, result = run(kind="hopping", size=10, step=5)
    assert windows(sink) == [
        [("a", -5, 5, [0, 3, 5]), ("b", -5, 5, [1])],
        [("a", 0, 10, [0, 2, 3, 5]), ("b", 0, 10, [1, 9]), ("a", 5, 15, [2, 6]), ("b", 5, 15, [4, 7, 9]),
         ("a", 10, 20, [6]), ("b", 10, 20, [4, 7])],
        [("a", 15, 25, [8, 11]), ("b", 15, 25, [10]), ("a", 20, 30, [8, 11]), ("b", 20, 30, [10, 13]),
         ("b", 25, 35, [13])],
    ]
    assert sink.marks == [{}, {}, {0: 7, 1: 8}]
    assert source.committed == {0: 13, 1: 14}
    assert filtered(result) == 1


def test_sliding() -> None:
    sink, source, result = run(kind="sliding", size=10)
    # one window (e - 10, e] per event time e; id 9 (t=5) is behind the watermark 9: it opens no
    # window of its own but joins b's open windows ending at 11 and 12
    assert windows(sink) == [
        [("a", -9, 1, [0])],
        [("b", -8, 2, [1]), ("a", -7, 3, [0, 5]), ("a", -6, 4, [0, 5, 3]), ("a", -4, 6, [0, 5, 3, 2])],
        [("b", 1, 11, [1, 9, 7]), ("b", 2, 12, [9, 7, 4]), ("a", 4, 14, [2, 6])],
        [("a", 11, 21, [6, 8]), ("a", 12, 22, [6, 8, 11]), ("b", 13, 23, [10]), ("b", 15, 25, [10, 13])],
    ]
    # a batch stays held until the watermark passes its latest time + size: the first (t <= 6) at 16
    assert sink.marks == [{}, {}, {}, {0: 3, 1: 4}]
    assert source.committed == {0: 13, 1: 14}
    assert filtered(result) == 1


def test_session() -> None:
    sink, source, result = run(kind="session", gap=5)
    # a's t=4 bridges [1, 6) and [6, 11); b's t=5 comes after b's [2, 7) was emitted: a new session
    assert windows(sink) == [
        [("b", 2, 7, [1])],
        [("b", 5, 10, [9]), ("a", 1, 11, [0, 3, 2, 5]), ("b", 11, 17, [7, 4]), ("a", 14, 19, [6])],
        [("a", 21, 27, [8, 11]), ("b", 23, 30, [10, 13])],
    ]
    assert sink.marks == [{}, {}, {0: 7, 1: 8}]
    assert source.committed == {0: 13, 1: 14}
    assert filtered(result) == 1


def test_late_events_go_to_the_dead_letter_sink() -> None:
    dlq = MemorySink()
    sink, source, result = run(dead_letter=dlq, size=10, late="error", on_error="dead_letter")
    assert [r["payload"] for r in dlq.values] == [{"t": 8, "user": "a", "id": 12}]
    assert "LateEvent" in dlq.values[0]["error"]
    assert len(windows(sink)) == 2 and filtered(result) == 0
    assert source.committed == {0: 13, 1: 14}


def test_an_idle_partition_stops_holding_windows_back() -> None:
    # partition 1 speaks once (t=2) and falls quiet; only its idleness lets the watermark reach 15
    # and close [0, 10) before the last step, which waits for that write (else the source times out)
    source = StepSource([[{"t": 1}, {"t": 3}], [{"t": 2}], [{"t": 15}], [{"t": 16}]], after=[0, 0, 0, 1],
                        partitions=[0, 1, 0, 0])
    sink = source.sink = WatermarkSink(source, partition=1)
    result = Pipeline("t").source(source).transform(
        "window", size=10, time_field="t", idle_timeout=0.05, aggregate={"n": "count"}).sink(sink) \
        .run(handle_signals=False)
    assert result.exit_code == 0
    assert sink.writes == [([{"window_start": 0, "window_end": 10, "n": 3}], None),
                           ([{"window_start": 10, "window_end": 20, "n": 2}], 1)]
    assert source.committed == {0: 4, 1: 1}


def test_key_fn_and_millisecond_event_time() -> None:
    values = [{"ms": 1_000, "u": "A"}, {"ms": 9_000, "u": "a"}, {"ms": 12_000, "u": "a"}]
    source = MemorySource(values=values, batch_size=10)
    sink = MemorySink()
    Pipeline("t").source(source).transform(
        "window", size=10, event_time={"field": "ms", "unit": "ms"}, key_fn=lambda v: v["u"].lower(),
        aggregate={"n": "count"}).sink(sink).run(handle_signals=False)
    assert sink.values == [{"window_start": 0, "window_end": 10, "key": "a", "n": 2},
                           {"window_start": 10, "window_end": 20, "key": "a", "n": 1}]


class _NoMerge(Aggregation):
    def step(self, state: Any, x: Any) -> Any:
        return x


@pytest.mark.parametrize("options, message", [
    ({"gap": 5}, "`gap` applies to `kind: session`"),
    ({"kind": "session"}, "needs `gap`"),
    ({"kind": "session", "gap": 5, "size": 10}, "`size` does not apply"),
    ({"kind": "tumbling"}, "needs `size`"),
    ({"size": 10, "step": 5}, "`step` applies to `kind: hopping`"),
    ({"kind": "hopping", "size": 10}, "needs `step`"),
    ({"kind": "hopping", "size": 10, "step": 20}, "must not exceed"),
    ({"size": 10, "idle_timeout": 5}, "`idle_timeout` applies to event time"),
    ({"size": 10, "time_field": "t", "event_time": {"field": "t"}}, "not both"),
    ({"size": 10, "key": "k", "key_fn": "os.path:basename"}, "`key` or `key_fn`, not both"),
    ({"size": 10, "event_time": {}}, "exactly one of"),
    ({"kind": "sliding", "size": 10, "aggregate": {"x": {"nomerge": "a"}}}, "cannot merge"),
])
def test_config_errors(options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(AGGREGATIONS, "nomerge", _NoMerge)
    with pytest.raises(ValidationError, match=message):
        Window(**{"aggregate": {"n": "count"}, **options})
