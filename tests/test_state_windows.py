"""Event-time windows: assignment, completion by watermark, late events, session merging."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from streamflow.state.watermarks import WatermarkTracker
from streamflow.state.windows import Assigner, Hopping, Session, Sliding, TimeWindow, Tumbling, Windows

Ids = tuple[Any, ...]


class Ids_:
    """A fold collecting event ids: a window's state says exactly which events it holds."""

    def initial(self) -> Ids:
        return ()

    def step(self, state: Ids, t: float, value: Any) -> Ids:
        return (*state, value)

    def merge(self, a: Ids, b: Ids) -> Ids:
        return a + b


def closed(windows: Windows[Ids], watermark: float | None) -> list[tuple[Hashable, TimeWindow, Ids]]:
    """Windows closed at ``watermark`` (inf: flushed) with the sorted ids of their events."""
    rows = windows.flush() if watermark == math.inf else windows.close(watermark)
    return [(k, w, tuple(sorted(ids))) for k, w, ids in rows]


W = TimeWindow


# -- examples: one fixed event set per kind ----------------------------------------------
EVENTS = [(1, "a"), (4, "b"), (12, "c"), (3, "d"), (25, "e")]  # (event time, id), one key


def feed(assigner: Assigner, watermark: float | None = None) -> tuple[Windows[Ids], list[Any]]:
    windows: Windows[Ids] = Windows(assigner, Ids_())
    return windows, [windows.add("k", t, i, watermark) for t, i in EVENTS]


def test_tumbling() -> None:
    windows, placed = feed(Tumbling(10))
    assert placed == [[W(0, 10)], [W(0, 10)], [W(10, 20)], [W(0, 10)], [W(20, 30)]]
    assert closed(windows, 19.9) == [("k", W(0, 10), ("a", "b", "d"))]
    assert closed(windows, 20) == [("k", W(10, 20), ("c",))]
    assert windows.add("k", 19, "late", 20) is None
    assert closed(windows, math.inf) == [("k", W(20, 30), ("e",))]
    assert len(windows) == 0


def test_hopping() -> None:
    windows, placed = feed(Hopping(10, 5))
    assert placed[0] == [W(-5, 5), W(0, 10)]
    assert placed[2] == [W(5, 15), W(10, 20)]
    assert closed(windows, 10) == [("k", W(-5, 5), ("a", "b", "d")), ("k", W(0, 10), ("a", "b", "d"))]
    # 9 still fits the open [5, 15): it goes there only, and is not late
    assert windows.add("k", 9, "f", 10) == [W(5, 15)]
    assert closed(windows, math.inf) == [("k", W(5, 15), ("c", "f")), ("k", W(10, 20), ("c",)),
                                     ("k", W(20, 30), ("e",)), ("k", W(25, 35), ("e",))]


def test_sliding_windows_end_at_each_event() -> None:
    windows, placed = feed(Sliding(5))
    assert placed == [[W(-4, 1)], [W(-1, 4)], [W(7, 12)], [W(-2, 3), W(-1, 4)], [W(20, 25)]]
    assert closed(windows, 4) == [("k", W(-4, 1), ("a",)), ("k", W(-2, 3), ("a", "d"))]
    assert closed(windows, 4.5) == [("k", W(-1, 4), ("a", "b", "d"))]  # (-1, 4] holds 4
    assert windows.add("k", 4, "late", 4.5) is None
    assert windows.add("k", 8, "f", 4.5) == [W(3, 8), W(7, 12)]
    assert closed(windows, math.inf) == [("k", W(3, 8), ("b", "f")), ("k", W(7, 12), ("c", "f")),
                                     ("k", W(20, 25), ("e",))]


def test_sessions_merge_when_an_event_bridges_them() -> None:
    windows, placed = feed(Session(3))
    assert placed == [[W(1, 4)], [W(4, 7)], [W(12, 15)], [W(1, 7)], [W(25, 28)]]
    assert windows.add("k", 9, "f", None) == [W(9, 12)]  # 12 - 9 = gap: not less, so apart
    assert windows.add("k", 10, "g", None) == [W(9, 15)]  # bridges [9, 12) and [12, 15)
    assert closed(windows, 14) == [("k", W(1, 7), ("a", "b", "d"))]
    assert windows.add("k", 6, "late", 14) is None
    assert windows.add("k", 11.5, "h", 14) == [W(9, 15)]
    assert closed(windows, math.inf) == [("k", W(9, 15), ("c", "f", "g", "h")), ("k", W(25, 28), ("e",))]


def test_keys_have_their_own_windows() -> None:
    windows: Windows[Ids] = Windows(Session(5), Ids_())
    windows.add("a", 0, 1, None)
    windows.add("b", 2, 2, None)
    windows.add("a", 4, 3, None)
    assert closed(windows, 8) == [("b", W(2, 7), (2,))]
    assert closed(windows, math.inf) == [("a", W(0, 9), (1, 3))]


def test_session_values_merge_in_time_order() -> None:
    windows: Windows[Ids] = Windows(Session(3), Ids_())
    for t in (0, 4, 2, 8, 6):
        windows.add("k", t, t, None)
    assert windows.close(None) == []  # no watermark yet
    assert windows.flush() == [("k", W(0, 11), (0, 2, 4, 6, 8))]


def test_a_sliding_pane_outlives_its_own_window() -> None:
    windows: Windows[Ids] = Windows(Sliding(2), Ids_())
    windows.add("k", 0, "a", None)
    assert closed(windows, 1) == [("k", W(-2, 0), ("a",))]
    assert len(windows) == 0 and windows.keys == 1  # the pane at 0 is still needed by (-1, 1]
    assert windows.add("k", 1, "b", 1) == [W(-1, 1)]
    assert closed(windows, math.inf) == [("k", W(-1, 1), ("a", "b"))]
    assert windows.keys == 0


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Tumbling(0), "size must be a positive"),
    (lambda: Hopping(5, 10), "must not exceed size"),
    (lambda: Sliding(float("inf")), "size must be a positive"),
    (lambda: Session(-1), "gap must be a positive"),
])
def test_bad_parameters(make: Callable[[], Assigner], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# -- property: assignment, closing and lateness equal a brute-force model -----------------
Event = tuple[float, int, str, int]  # (clock advance, partition, key, event time)


def brute_windows(kind: str, a: int, b: int, accepted: list[tuple[str, int]], key: str,
                  t: int) -> list[TimeWindow]:
    """Every window ``t`` of ``key`` belongs to, ignoring the watermark (sessions: after merging)."""
    if kind in ("tumbling", "hopping"):
        size, step = (a, a) if kind == "tumbling" else (a, b)
        return [W(k * step, k * step + size) for k in range(-size, t + 1) if k * step <= t < k * step + size]
    if kind == "sliding":
        return [W(e - a, e) for e in sorted({u for k, u in accepted if k == key} | {t}) if t <= e < t + a]
    chains: list[list[int]] = []  # session: the pending events, split where they are `a` apart
    for u in sorted([u for k, u in accepted if k == key] + [t]):
        if chains and u - chains[-1][-1] < a:
            chains[-1].append(u)
        else:
            chains.append([u])
    chain = next(c for c in chains if t in c)
    return [W(chain[0], chain[-1] + a)]


def complete(kind: str, window: TimeWindow, watermark: float | None) -> bool:
    if watermark is None:
        return False
    return window.end < watermark if kind == "sliding" else window.end <= watermark


def contents(kind: str, a: int, accepted: list[tuple[str, int, int]], key: str, w: TimeWindow) -> Ids:
    """Ids of the accepted events of ``key`` inside ``w``."""
    inside = (lambda u: w.start < u <= w.end) if kind == "sliding" else (lambda u: w.start <= u < w.end)
    return tuple(sorted(i for k, u, i in accepted if k == key and inside(u)))


class Model:
    """Windows recomputed from the accepted events at every step."""

    def __init__(self, kind: str, a: int, b: int) -> None:
        self.kind, self.a, self.b = kind, a, b
        self.accepted: list[tuple[str, int, int]] = []  # not yet in an emitted window (fixed: all)
        self.open: dict[tuple[str, TimeWindow], None] = {}

    def add(self, key: str, t: int, i: int, watermark: float | None) -> list[TimeWindow] | None:
        pending = [(k, u) for k, u, _ in self.accepted]
        windows = [w for w in brute_windows(self.kind, self.a, self.b, pending, key, t)
                   if not complete(self.kind, w, watermark)]
        if not windows:
            return None
        if self.kind == "session":  # the merged session replaces those it covers
            self.open = {(k, w): None for k, w in self.open if k != key or w.end <= windows[0].start
                         or w.start >= windows[0].end}
        self.accepted.append((key, t, i))
        self.open.update({(key, w): None for w in windows})
        return windows

    def close(self, watermark: float | None) -> list[tuple[str, TimeWindow, Ids]]:
        due = sorted((w.end, w.start, k) for k, w in self.open if complete(self.kind, w, watermark))
        out = []
        for end, start, k in due:
            w = W(start, end)
            del self.open[(k, w)]
            out.append((k, w, contents(self.kind, self.a, self.accepted, k, w)))
        if self.kind == "session":
            self.accepted = [(k, u, i) for k, u, i in self.accepted
                             if not any(k == k2 and w.start <= u < w.end for k2, w, _ in out)]
        return out


def assigner_of(kind: str, a: int, b: int) -> Assigner:
    return {"tumbling": lambda: Tumbling(a), "hopping": lambda: Hopping(a, b),
            "sliding": lambda: Sliding(a), "session": lambda: Session(a)}[kind]()


def by_key_order(rows: list[tuple[Any, TimeWindow, Ids]]) -> list[tuple[Any, TimeWindow, Ids]]:
    return sorted(rows, key=lambda r: (r[1].end, r[1].start, r[0]))


events_strategy = st.lists(st.tuples(st.sampled_from([0.0, 0.0, 1.0, 6.0]), st.integers(0, 2),
                                     st.sampled_from(["x", "y"]), st.integers(0, 60)), max_size=30)


@settings(max_examples=400, deadline=None)
@given(events=events_strategy, kind=st.sampled_from(["tumbling", "hopping", "sliding", "session"]),
       a=st.integers(1, 12), b=st.integers(1, 12), lateness=st.sampled_from([0.0, 3.0]),
       idle=st.sampled_from([None, 4.0]))
def test_windows_match_brute_force(events: list[Event], kind: str, a: int, b: int, lateness: float,
                                   idle: float | None) -> None:
    b = min(a, b)
    now = [0.0]
    tracker = WatermarkTracker(lateness, idle, clock=lambda: now[0])
    tracker.assign([0, 1, 2])
    windows: Windows[Ids] = Windows(assigner_of(kind, a, b), Ids_())
    model = Model(kind, a, b)
    for i, (advance, partition, key, t) in enumerate(events):
        now[0] += advance
        watermark = tracker.watermark  # an idle partition may have moved it
        assert by_key_order(closed(windows, watermark)) == by_key_order(model.close(watermark))
        placed = windows.add(key, t, i, watermark)
        event("late" if placed is None else f"{len(placed)} windows")
        assert placed == model.add(key, t, i, watermark)  # the same windows, or both late (None)
        if kind in ("tumbling", "hopping"):  # late exactly when every window of t is complete
            assert (placed is None) == all(complete(kind, w, watermark)
                                           for w in brute_windows(kind, a, b, [], key, t))
        tracker.observe(partition, t)
        watermark = tracker.watermark
        done = closed(windows, watermark)
        event(f"{kind}: closed {min(len(done), 2)}")
        assert by_key_order(done) == by_key_order(model.close(watermark))
    assert by_key_order(closed(windows, math.inf)) == by_key_order(model.close(math.inf))
    assert len(windows) == 0 and windows.keys == 0
