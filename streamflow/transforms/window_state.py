"""What an open window of the `window` transform holds: aggregate states, values, and acks.

`WindowFold` is the `Fold` the event-time `Windows` build window states with.
Besides the aggregates (and the values, when a user ``fn`` wants them) a
`WindowState` lists the acks of the input batches that fed it, so a source
position is committed only once every window holding it has been written
(contract 2). How a listed ack is *owned* depends on the window kind:

* tumbling, hopping and session windows own one reference per listed ack:
  `step` retains the acks of the current batch the first time it folds one of
  its events into a state; a merge (sessions bridged by an event) moves the
  listed references into the merged state, as the merged-away states vanish.
  An emitted window passes its references on to the output batch.
* sliding windows are built at close time by merging *panes* that several
  windows share, so a pane's list is not a reference. Each emitted window
  retains its listed acks (`WindowFold.emit`), and `AckHolds` keeps the input
  batch itself until the watermark passes the last window that could still
  take its events (``max event time + size``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.acks import Ack
from ..core.batch import Batch
from .aggregations import AGGREGATIONS, Aggregation, parse_aggregate
from .fields import path_getter

__all__ = ["AckHolds", "WindowFold", "WindowState"]


def _present(value: Any) -> bool:
    """The "field" of an aggregation without one (`count` of events): always there."""
    return True


class WindowState:
    """One open window (or sliding pane): aggregate states, values for ``fn``, the acks it lists."""

    __slots__ = ("aggs", "values", "acks", "batch", "created")

    def __init__(self, aggs: list[Any], values: list[Any] | None, acks: list[Ack], created: float) -> None:
        self.aggs = aggs
        self.values = values
        self.acks = acks
        self.batch: Sequence[Ack] | None = None  # the acks of the last batch folded in
        self.created = created


class WindowFold:
    """Folds events into `WindowState`s: the aggregations of ``aggregate``, and held acks.

    The transform sets `begin` before the events of each input batch.
    """

    def __init__(self, aggregate: dict[str, Any], keep_values: bool, owns_acks: bool) -> None:
        self.aggs: list[tuple[str, Aggregation]] = []
        gets: list[Callable[[Any], Any]] = []
        for name, spec in aggregate.items():
            op, field = parse_aggregate(name, spec)
            self.aggs.append((name, AGGREGATIONS[op]()))
            gets.append(path_getter(field) if field else _present)
        self._initial = [agg.initial for _, agg in self.aggs]
        self._steps = [(get, agg.step) for get, (_, agg) in zip(gets, self.aggs, strict=True)]
        self._gets = gets
        self._objects = [agg for _, agg in self.aggs]
        #: Timed or in-place aggregations need `_fold`; the others take the one-line fast path.
        self._simple = not any(agg.timed or agg.in_place for agg in self._objects)
        self.keep_values = keep_values
        self.owns_acks = owns_acks
        self._acks: Sequence[Ack] = ()
        self._created = 0.0

    def begin(self, batch: Batch, hold_acks: bool = True) -> None:
        """The events folded in next come from ``batch`` (whose acks the windows hold, if ``hold_acks``)."""
        self._acks = batch.acks if hold_acks else ()
        self._created = batch.created

    # -- the Fold protocol -----------------------------------------------------------
    def initial(self) -> WindowState:
        return WindowState(self._initial, [] if self.keep_values else None, [], self._created)

    def step(self, state: WindowState, t: float, value: Any) -> WindowState:
        """Fold ``value`` in; if an aggregation fails, ``state`` is left as it was."""
        if self._simple:
            state.aggs = [s if (x := get(value)) is None else step(s, x)
                          for s, (get, step) in zip(state.aggs, self._steps, strict=True)]
        else:
            state.aggs = self.aggregate(state.aggs, t, value)
        if state.values is not None:
            state.values.append(value)
        acks = self._acks
        if state.batch is not acks:
            state.batch = acks
            state.acks.extend(acks)
            if self.owns_acks:
                for a in acks:
                    a.retain()
        return state

    def merge(self, a: WindowState, b: WindowState) -> WindowState:
        """Both windows as one (``a`` the earlier); the listed acks move to the result."""
        try:
            aggs = [agg.merge(x, y) for agg, x, y in zip(self._objects, a.aggs, b.aggs, strict=True)]
        except Exception:
            # Only a session merge fails here, mid-`add`: the state `step` just made for the
            # bridging event is lost with its references; give them back.
            if self.owns_acks:
                for ack in self._acks:
                    ack.release()
            raise
        values = None if a.values is None or b.values is None else a.values + b.values
        return WindowState(aggs, values, a.acks + b.acks, min(a.created, b.created))

    def aggregate(self, states: list[Any], t: float, value: Any) -> list[Any]:
        """The states after folding in ``value``; an exception leaves ``states`` as they were.

        In-place aggregations are checked first and stepped last, once nothing else can fail.
        """
        new = list(states)
        in_place: list[tuple[int, Aggregation, Any]] = []
        for i, (get, agg) in enumerate(zip(self._gets, self._objects, strict=True)):
            x = get(value)
            if x is None:
                continue
            if agg.timed:
                x = (t, x)
            if agg.in_place:
                agg.check(x)
                in_place.append((i, agg, x))
            else:
                new[i] = agg.step(states[i], x)
        for i, agg, x in in_place:
            new[i] = agg.step(new[i], x)
        return new

    def check(self, t: float, value: Any) -> None:
        """Raise if folding ``value`` into a fresh window would (before it enters several)."""
        self.aggregate(self._initial, t, value)

    # -- output ----------------------------------------------------------------------
    def emit(self, state: WindowState) -> list[Ack]:
        """The acks an emitted window hands to its output batch, one reference each."""
        if not self.owns_acks:
            for a in state.acks:
                a.retain()
        return state.acks

    def dump(self, state: WindowState) -> list[Any]:
        """``state`` as JSON data for a state store: its aggregates and the values for ``fn``."""
        return [[agg.dump(s) for agg, s in zip(self._objects, state.aggs, strict=True)], state.values]

    def load(self, data: list[Any]) -> WindowState:
        """The state a `dump` was made of (it holds no acks: the store keeps it)."""
        aggs, values = data
        return WindowState([agg.load(s) for agg, s in zip(self._objects, aggs, strict=True)], values, [],
                           time.monotonic())

    def results(self, state: WindowState) -> dict[str, Any]:
        """The aggregates of a window: output field -> value."""
        return {name: agg.result(s) for (name, agg), s in zip(self.aggs, state.aggs, strict=True)}


class AckHolds:
    """Input batches held until the watermark reaches a time (sliding windows; see the module doc)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Batch]] = []
        self._n = 0

    def hold(self, batch: Batch, until: float) -> None:
        """Keep ``batch`` (its own reference) until the watermark reaches ``until``."""
        self._n += 1
        heapq.heappush(self._heap, (until, self._n, batch))

    def release(self, watermark: float | None) -> None:
        """Ack the batches held until ``watermark`` or earlier (None: none yet)."""
        heap = self._heap
        while heap and watermark is not None and heap[0][0] <= watermark:
            heapq.heappop(heap)[2].ack()

    def release_all(self) -> None:
        while self._heap:
            heapq.heappop(self._heap)[2].ack()

    def __len__(self) -> int:
        return len(self._heap)
