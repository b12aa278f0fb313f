"""Window aggregations: each folds like its definition, and merging two windows equals folding both."""

from __future__ import annotations

from typing import Any

from held_acks import WatermarkSink
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySource
from streamflow.transforms.aggregations import AGGREGATIONS, Aggregation, mergeable

Timed = tuple[float, int]


def fold(agg: Aggregation, items: list[Timed]) -> Any:
    state = agg.initial
    for t, x in items:
        state = agg.step(state, (t, x) if agg.timed else x)
    return state


def definition(name: str, items: list[Timed]) -> Any:
    """What each aggregation means, written plainly."""
    xs = [x for _, x in items]
    earliest = min(range(len(items)), key=lambda i: items[i][0], default=None)
    latest = max(reversed(range(len(items))), key=lambda i: items[i][0], default=None)
    return {
        "count": len(xs), "sum": sum(xs), "min": min(xs, default=None), "max": max(xs, default=None),
        "mean": sum(xs) / len(xs) if xs else None, "collect": xs, "count_distinct": len(set(xs)),
        "first": None if earliest is None else xs[earliest],
        "last": None if latest is None else xs[latest],
    }[name]


items = st.lists(st.tuples(st.integers(0, 5).map(float), st.integers(-3, 3)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(AGGREGATIONS)), a=items, b=items)
def test_folding_and_merging_match_the_definition(name: str, a: list[Timed], b: list[Timed]) -> None:
    agg = AGGREGATIONS[name]()
    assert mergeable(AGGREGATIONS[name])
    assert agg.result(fold(agg, a + b)) == definition(name, a + b)
    left, right = fold(agg, a), fold(agg, b)
    snapshot = (repr(left), repr(right))
    assert agg.result(agg.merge(left, right)) == definition(name, a + b)
    assert (repr(left), repr(right)) == snapshot  # merge leaves both inputs as they were


def test_new_aggregations_in_a_window() -> None:
    events = [{"t": 5, "u": "a", "x": 1}, {"t": 2, "u": "b", "x": 2}, {"t": 7, "u": "a", "x": 3},
              {"t": 2, "u": "c", "x": 4}]
    source = MemorySource(values=events, batch_size=2)
    sink = WatermarkSink(source)
    aggregate = {"first": {"first": "x"}, "last": {"last": "x"}, "xs": {"collect": "x"},
                 "users": {"count_distinct": "u"}}
    Pipeline("t").source(source).transform("window", size=10, time_field="t", aggregate=aggregate) \
        .sink(sink).run(handle_signals=False)
    assert sink.values == [{"window_start": 0, "window_end": 10, "first": 2, "last": 3, "xs": [1, 2, 3, 4],
                            "users": 3}]


def test_an_event_failing_one_aggregation_leaves_in_place_ones_untouched() -> None:
    events = [{"t": 1, "u": "a", "x": 1}, {"t": 2, "u": ["unhashable"], "x": 2}, {"t": 3, "u": "b", "x": "?"},
              {"t": 4, "u": "c", "x": 4}]
    source = MemorySource(values=events, batch_size=10)
    sink = WatermarkSink(source)
    aggregate = {"xs": {"collect": "x"}, "users": {"count_distinct": "u"}, "total": {"sum": "x"},
                 "ts": {"collect": "t"}}
    Pipeline("t").source(source).transform("window", size=10, time_field="t", aggregate=aggregate,
                                            on_error="skip").sink(sink).run(handle_signals=False)
    assert sink.values == [{"window_start": 0, "window_end": 10, "xs": [1, 4], "users": 2, "total": 5,
                            "ts": [1, 4]}]
