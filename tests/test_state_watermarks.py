"""Contract 9: per-partition watermarks (minimum, lateness, idle partitions) and event-time sources."""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from streamflow.core.message import Message
from streamflow.state.event_time import EventTime, to_seconds
from streamflow.state.watermarks import WatermarkTracker


class Clock:
    """Processing time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event_time_of(value: object) -> float:
    """A user function for `event_time: {fn: ...}`."""
    assert isinstance(value, dict)
    return float(value["at"]["s"]) + 0.5


# -- examples ----------------------------------------------------------------------------
def test_the_watermark_is_the_slowest_partition_minus_the_lateness() -> None:
    t = WatermarkTracker(allowed_lateness=2)
    assert t.watermark is None
    t.observe(0, 10)
    assert t.watermark == 8
    t.observe(1, 5)
    assert t.watermark == 8  # never backwards: partition 1 appeared behind it
    t.observe(1, 20)
    t.observe(0, 15)
    assert t.watermark == 13
    assert t.behind(12.5) and not t.behind(13)


def test_an_assigned_partition_without_events_holds_the_watermark() -> None:
    t = WatermarkTracker()
    t.assign([0, 1])
    t.observe(0, 10)
    assert t.watermark is None
    t.observe(1, 4)
    assert t.watermark == 4


def test_an_idle_partition_stops_holding_the_watermark_back_until_its_next_event() -> None:
    clock = Clock()
    t = WatermarkTracker(idle_timeout=5, clock=clock)
    t.assign(["a", "b"])
    t.observe("a", 100)
    clock.now = 4.9
    assert t.watermark is None and not t.idle("b")
    clock.now = 5
    assert t.idle("b") and t.watermark == 100  # b never had an event and went quiet
    t.observe("b", 50)  # b is back, behind the watermark: it stays
    assert not t.idle("b") and t.watermark == 100
    t.observe("a", 200)
    t.observe("b", 150)
    assert t.watermark == 150
    clock.now = 11  # both quiet now: the stream as a whole is done up to its latest event
    assert t.watermark == 200


def test_forgetting_a_partition_releases_the_watermark() -> None:
    t = WatermarkTracker()
    t.observe(0, 10)
    t.observe(1, 3)
    assert t.watermark == 3
    t.forget([1])
    assert t.watermark == 10 and t.max_time(1) is None


def test_bad_tracker_settings() -> None:
    with pytest.raises(ValueError, match="allowed_lateness"):
        WatermarkTracker(allowed_lateness=-1)
    with pytest.raises(ValueError, match="idle_timeout"):
        WatermarkTracker(idle_timeout=0)


# -- property: the tracker equals a model recomputed from the whole history --------------
Step = tuple[float, Hashable, float]  # (clock advance, partition, event time)


def model_watermarks(steps: list[Step], assigned: list[Hashable], lateness: float,
                     idle: float | None) -> list[float | None]:
    """The watermark after each step, recomputed from every event so far."""
    history: dict[Hashable, list[tuple[float, float | None]]] = {p: [(0.0, None)] for p in assigned}
    now, best, out = 0.0, None, []
    for advance, partition, t in steps:
        now += advance
        history.setdefault(partition, []).append((now, t))
        times = {p: [x for _, x in h if x is not None] for p, h in history.items()}
        quiet = {p for p, h in history.items() if idle is not None and now - h[-1][0] >= idle}
        active = [times[p] for p in history if p not in quiet]
        if active:
            candidate = None if any(not ts for ts in active) else min(max(ts) for ts in active) - lateness
        else:
            seen = [max(ts) for ts in times.values() if ts]
            candidate = max(seen) - lateness if seen else None
        if candidate is not None and (best is None or candidate > best):
            best = candidate
        out.append(best)
    return out


steps_strategy = st.lists(st.tuples(st.sampled_from([0.0, 0.0, 1.0, 3.0, 7.0]), st.integers(0, 3),
                                    st.integers(0, 100).map(float)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(steps=steps_strategy, assigned=st.lists(st.integers(0, 3), max_size=4, unique=True),
       lateness=st.sampled_from([0.0, 2.0, 10.0]), idle=st.sampled_from([None, 2.0, 5.0]))
def test_watermark_matches_brute_force(steps: list[Step], assigned: list[Hashable], lateness: float,
                                       idle: float | None) -> None:
    clock = Clock()
    tracker = WatermarkTracker(lateness, idle, clock)
    tracker.assign(assigned)
    seen = []
    for advance, partition, t in steps:
        clock.now += advance
        tracker.observe(partition, t)
        seen.append(tracker.watermark)
    assert seen == model_watermarks(steps, assigned, lateness, idle)


# -- event time ------------------------------------------------------------------------
def test_event_time_from_a_field_a_function_or_the_timestamp() -> None:
    msg = Message({"ts": 1_700_000_000_500, "at": {"s": 7}, "iso": "2024-05-01T12:00:00+02:00"},
                  timestamp=42.25)
    assert EventTime(field="ts", unit="ms").extractor()(msg) == 1_700_000_000.5
    assert EventTime(field="at.s").extractor()(msg) == 7
    assert EventTime(field="iso").extractor()(msg) == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC).timestamp()
    assert EventTime(fn=f"{__name__}:event_time_of").extractor()(msg) == 7.5
    assert EventTime(timestamp=True).extractor()(msg) == 42.25
    assert to_seconds(dt.datetime(1970, 1, 1, 0, 1, tzinfo=dt.UTC)) == 60


@pytest.mark.parametrize(("value", "message"), [
    ({}, "field 'ts' gave None"),
    ({"ts": "2024-05-01T12:00:00"}, "has no UTC offset"),
    ({"ts": "yesterday"}, "neither a number nor an ISO-8601 time"),
    ({"ts": [1]}, "expected epoch seconds"),
])
def test_a_missing_or_unreadable_time_is_an_error(value: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventTime(field="ts").extractor()(Message(value))


def test_a_message_without_timestamp_is_an_error() -> None:
    with pytest.raises(ValueError, match="no timestamp"):
        EventTime(timestamp=True).extractor()(Message({}))


@pytest.mark.parametrize(("config", "message"), [
    ({}, "exactly one of"),
    ({"field": "t", "timestamp": True}, "got field and timestamp"),
    ({"field": "a..b"}, "invalid field path"),
    ({"timestamp": True, "unit": "ms"}, "`unit` applies to"),
    ({"fn": "no_such_module_xyz:f"}, "cannot import"),
    ({"field": "t", "zone": "UTC"}, "Extra inputs"),
])
def test_event_time_config_errors(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EventTime.model_validate(config)
