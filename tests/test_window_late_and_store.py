"""window: the `late` output (dead letter or a named sink), and open windows written to a state store and read back."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.batch import Batch
from streamflow.core.errors import ConfigError
from streamflow.core.message import Message
from streamflow.state.stores import MemoryStore
from streamflow.state.watermarks import WatermarkTracker
from streamflow.state.windows import TimeWindow
from streamflow.transforms.window_config import WindowConfig
from streamflow.transforms.window_state import WindowFold
from streamflow.transforms.window_store import MAX_TIME, WindowStore

EVENTS = [{"t": 1, "id": 1}, {"t": 25, "id": 2}, {"t": 2, "id": 3}, {"t": 27, "id": 4}]  # id 3 is late


def pipeline(source: MemorySource, out: MemorySink, **window: Any) -> Pipeline:
    return Pipeline("t").source(source).transform("window", size=10, time_field="t",
                                                  aggregate={"n": "count"}, **window).sink(out)


def test_late_events_go_to_the_named_sink_only_and_are_counted() -> None:
    source, out, late = MemorySource(values=EVENTS, batch_size=1), MemorySink(), MemorySink(name="late")
    result = pipeline(source, out, late={"sink": "late"}).sink(late).run(handle_signals=False)
    assert result.exit_code == 0, result.summary()
    assert out.values == [{"window_start": 0, "window_end": 10, "n": 1}, {"window_start": 20, "window_end": 30, "n": 2}]
    assert late.values == [{"t": 2, "id": 3}]  # unchanged, and nothing else
    stats = next(s for s in result.stats if s.name == "window")
    assert (stats.late, stats.filtered) == (1, 0)
    assert source.committed == {0: 4}


def test_late_events_go_to_the_dead_letter_sink_whatever_on_error_says() -> None:
    source, out, dlq = MemorySource(values=EVENTS, batch_size=1), MemorySink(), MemorySink()
    result = pipeline(source, out, late="dead_letter").dead_letter(dlq).run(handle_signals=False)
    assert result.exit_code == 0, result.summary()
    [record] = dlq.values
    assert record["payload"] == {"t": 2, "id": 3} and record["stage"] == "window"
    assert record["error"].startswith("LateEvent: event time 2 is behind the watermark 25")
    stats = next(s for s in result.stats if s.name == "window")
    assert (stats.late, stats.dead_lettered) == (1, 1)


@pytest.mark.parametrize(("late", "sinks", "message"), [
    ({"sink": "nope"}, {}, "writes to sink 'nope', but the pipeline has no sink of that name"),
    ({"sink": "late"}, {"when": lambda v: True}, "sink 'late' is fed by stage 'window' directly"),
    ("dead_letter", {}, "has no dead_letter sink"),
])
def test_late_output_config_errors(late: Any, sinks: dict[str, Any], message: str) -> None:
    p = pipeline(MemorySource(values=EVENTS), MemorySink(), late=late).sink(MemorySink(name="late"), **sinks)
    with pytest.raises(ConfigError, match=message):
        p.validate()


# -- open windows in a store: written, then read back as a restore would -----------------------
KINDS = [{"kind": "tumbling", "size": 10}, {"kind": "hopping", "size": 10, "step": 5},
         {"kind": "sliding", "size": 10}, {"kind": "session", "gap": 5}]
AGGREGATES = {"n": "count", "total": {"sum": "x"}, "avg": {"mean": "x"}, "first": {"first": "x"},
              "last": {"last": "x"}, "xs": {"collect": "x"}, "kinds": {"count_distinct": "kind"}}


def window_store(config: WindowConfig, tracker: WatermarkTracker) -> WindowStore:
    fold = WindowFold(config.aggregate, keep_values=False, owns_acks=True)
    return WindowStore("w", config.assigner(), fold, tracker=tracker)


@pytest.mark.parametrize("kind", KINDS, ids=[k["kind"] for k in KINDS])
def test_open_windows_written_to_a_store_come_back_the_same(kind: dict[str, Any]) -> None:
    config = WindowConfig(**kind, time_field="t", key="user", aggregate=AGGREGATES)
    first, store = window_store(config, WatermarkTracker()), MemoryStore("w", 0)
    first.adopt(0, store)
    first.fold.begin(Batch([]), hold_acks=False)
    events = [(1, "a", 3, "k1"), (4, "a", 5, "k2"), (3, "b", 1, "k1"), (12, "a", 2, "k1"), (6, "a", 7, "k1")]
    for offset, (t, user, x, kind_) in enumerate(events):
        msg = Message({"t": t, "user": user, "x": x, "kind": kind_}, partition=0, offset=offset)
        first.enter(msg).add(user, t, msg.value, None)
        first.touched(msg, user)
    assert first.tracker is not None
    first.tracker.observe(0, 12)
    first.observed([0])
    first.write()
    assert store.get(MAX_TIME) == b"12"

    second = window_store(config, WatermarkTracker())
    second.adopt(0, store)
    assert second.tracker is not None and second.tracker.max_time(0) == 12
    assert second.replayed(Message({}, partition=0, offset=4), "a")  # in a's windows already
    assert not second.replayed(Message({}, partition=0, offset=5), "a")

    def closed(ws: WindowStore) -> list[tuple[Any, TimeWindow, dict[str, Any]]]:
        return sorted(((k, w, ws.fold.results(s)) for _, k, w, s in ws.due(float("inf"))),
                      key=lambda c: (c[1], c[0]))  # keys closing together come in no set order

    expected = closed(first)
    assert len(expected) >= 3
    assert closed(second) == expected
