"""Event-time windows: which windows an event belongs to, and when a window is complete.

A window is complete once the watermark ``W`` (see `watermarks`) reaches its
end: no event inside it can still arrive. An event is *late* when every window
it would belong to is already complete; it then changes nothing and the caller
routes it to its late output (an event some of whose windows are still open
goes into those only, as in Flink). Window kinds, for ``t`` an event time:

* ``Tumbling(size)``: the one window ``[k*size, (k+1)*size)`` holding ``t``.
* ``Hopping(size, step)``: every window ``[k*step, k*step + size)`` holding ``t``
  (``size / step`` of them, overlapping; ``step <= size``).
* ``Sliding(size)``: one window per distinct event time ``e``, covering the
  ``size`` seconds up to and including it: ``(e - size, e]`` — "the last five
  minutes at each event". ``t`` belongs to its own window and to those of the
  events in ``[t, t + size)``; complete when ``e < W``. An event with ``t < W``
  opens no window of its own but still joins the open windows it falls in.
  Values are kept per event time (a *pane*) until no open window can need them.
* ``Session(gap)``: events less than ``gap`` apart (chained) form one session
  ``[first, last + gap)``; an event that bridges two open sessions merges them.
  Late when the session it would join (after merging) is complete.

`Windows` keeps the open windows of every key with a state folded by a `Fold`
(sessions and sliding windows need its `merge`). It is pure bookkeeping: no
I/O, no clock, the watermark is passed in. `Windows.dump` and `Windows.load`
turn one key's open windows into JSON-ready data and back, for a state store.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

__all__ = ["Assigner", "Fold", "Hopping", "KeyWindows", "Session", "Sliding", "TimeWindow", "Tumbling",
           "Windows"]

S = TypeVar("S")


class TimeWindow(NamedTuple):
    """A window's bounds in epoch seconds: ``[start, end)`` (sliding windows: ``(start, end]``)."""

    start: float
    end: float


class Fold(Protocol[S]):
    """How a window's state is built: a fresh state, one event folded in, two states combined."""

    def initial(self) -> S: ...

    def step(self, state: S, t: float, value: Any) -> S: ...

    def merge(self, a: S, b: S) -> S:
        """The state of both windows (``a`` the earlier); must not change ``a`` or ``b``."""
        ...


class KeyWindows(ABC, Generic[S]):
    """The open windows of one key and their states."""

    def __init__(self, assigner: Assigner, fold: Fold[S]) -> None:
        self.fold = fold
        self.complete = assigner.complete

    @abstractmethod
    def add(self, t: float, value: Any, watermark: float | None) -> list[TimeWindow] | None:
        """Fold an event in; the windows it went into, oldest first, or None if it is late."""

    @abstractmethod
    def close(self, watermark: float) -> list[tuple[TimeWindow, S]]:
        """Remove and return the windows complete at ``watermark`` (inf: all), by end then start."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of open windows."""

    @abstractmethod
    def next_due(self) -> float | None:
        """When `close` may next have work: the earliest end of an open window; None: holds nothing."""

    @abstractmethod
    def dump(self, encode: Callable[[S], Any]) -> Any:
        """The open windows as JSON-ready data, each state through ``encode`` (for a state store)."""

    @abstractmethod
    def load(self, data: Any, decode: Callable[[Any], S]) -> None:
        """Add the windows of a `dump` (states through ``decode``)."""


class Assigner(ABC):
    """A window kind: its parameters, and the per-key bookkeeping of its open windows."""

    @abstractmethod
    def key_windows(self, fold: Fold[S]) -> KeyWindows[S]:
        """Empty open-window bookkeeping for one key."""

    def complete(self, end: float, watermark: float | None) -> bool:
        """Whether a window ending at ``end`` is complete at ``watermark`` (None: no watermark yet)."""
        return watermark is not None and end <= watermark

    @abstractmethod
    def behind(self, t: float, watermark: float | None) -> bool:
        """Whether an event at ``t`` is late whatever is open: every window it could join is complete."""


def _positive(name: str, value: float) -> None:
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


# -- tumbling and hopping: a fixed set of windows per event time --------------------------
class Hopping(Assigner):
    """Windows of ``size`` seconds starting every ``step`` seconds since the epoch."""

    def __init__(self, size: float, step: float) -> None:
        _positive("size", size)
        _positive("step", step)
        if step > size:
            raise ValueError(f"step ({step}) must not exceed size ({size}): events between "
                             "windows would belong to none")
        self.size = size
        self.step = step

    def windows(self, t: float) -> list[TimeWindow]:
        """The windows holding ``t``, oldest first."""
        size, step = self.size, self.step
        k = math.floor(t / step)
        out: list[TimeWindow] = []
        while (start := k * step) + size > t:
            if start <= t:
                out.append(TimeWindow(start, start + size))
            k -= 1
        out.reverse()
        return out

    def key_windows(self, fold: Fold[S]) -> KeyWindows[S]:
        return _FixedWindows(self, fold)

    def behind(self, t: float, watermark: float | None) -> bool:
        return self.complete(self.windows(t)[-1].end, watermark)


class Tumbling(Hopping):
    """Adjacent windows of ``size`` seconds, aligned to multiples of it since the epoch."""

    def __init__(self, size: float) -> None:
        super().__init__(size, size)

    def windows(self, t: float) -> list[TimeWindow]:
        start = math.floor(t / self.size) * self.size
        return [TimeWindow(start, start + self.size)]


class _FixedWindows(KeyWindows[S]):
    def __init__(self, assigner: Hopping, fold: Fold[S]) -> None:
        super().__init__(assigner, fold)
        self.windows = assigner.windows
        self.open: dict[TimeWindow, S] = {}

    def add(self, t: float, value: Any, watermark: float | None) -> list[TimeWindow] | None:
        complete, fold, open_ = self.complete, self.fold, self.open
        windows = self.windows(t)
        if len(windows) == 1:  # tumbling: no filtering list to build
            w = windows[0]
            if complete(w.end, watermark):
                return None
            state = open_.get(w)
            open_[w] = fold.step(fold.initial() if state is None else state, t, value)
            return windows
        windows = [w for w in windows if not complete(w.end, watermark)]
        if not windows:
            return None
        for w in windows:
            state = open_.get(w)
            open_[w] = fold.step(fold.initial() if state is None else state, t, value)
        return windows

    def close(self, watermark: float) -> list[tuple[TimeWindow, S]]:
        complete = self.complete
        due = sorted((w for w in self.open if complete(w.end, watermark)),
                     key=lambda w: (w.end, w.start))
        return [(w, self.open.pop(w)) for w in due]

    def __len__(self) -> int:
        return len(self.open)

    def next_due(self) -> float | None:
        return min((w.end for w in self.open), default=None)

    def dump(self, encode: Callable[[S], Any]) -> Any:
        return [[w.start, w.end, encode(s)] for w, s in self.open.items()]

    def load(self, data: Any, decode: Callable[[Any], S]) -> None:
        for start, end, state in data:
            self.open[TimeWindow(start, end)] = decode(state)


# -- sliding: one window per event time, built from panes ---------------------------------
class Sliding(Assigner):
    """One window ``(e - size, e]`` per distinct event time ``e``; see the module docstring."""

    def __init__(self, size: float) -> None:
        _positive("size", size)
        self.size = size

    def complete(self, end: float, watermark: float | None) -> bool:
        return watermark is not None and end < watermark

    def key_windows(self, fold: Fold[S]) -> KeyWindows[S]:
        return _SlidingWindows(self, fold)

    def behind(self, t: float, watermark: float | None) -> bool:
        return watermark is not None and t + self.size <= watermark


class _SlidingWindows(KeyWindows[S]):
    def __init__(self, assigner: Sliding, fold: Fold[S]) -> None:
        super().__init__(assigner, fold)
        self.size = assigner.size
        self.panes: dict[float, S] = {}  # event time -> state of its events
        self.ends: set[float] = set()  # open windows, by end

    def add(self, t: float, value: Any, watermark: float | None) -> list[TimeWindow] | None:
        own = not self.complete(t, watermark)
        size = self.size
        ends = sorted(e for e in self.ends if t <= e < t + size)  # all open
        if not own and not ends:
            return None
        pane = self.panes.get(t)
        self.panes[t] = self.fold.step(self.fold.initial() if pane is None else pane, t, value)
        if own and (not ends or ends[0] != t):
            self.ends.add(t)
            ends.insert(0, t)
        return [TimeWindow(e - size, e) for e in ends]

    def close(self, watermark: float) -> list[tuple[TimeWindow, S]]:
        due = sorted(e for e in self.ends if self.complete(e, watermark))
        size, fold = self.size, self.fold
        times = sorted(self.panes)
        out: list[tuple[TimeWindow, S]] = []
        for e in due:
            state = fold.initial()
            for p in times:  # a window holds few panes; a scan keeps this simple
                if e - size < p <= e:
                    state = fold.merge(state, self.panes[p])
            out.append((TimeWindow(e - size, e), state))
        self.ends.difference_update(due)
        for p in times:  # a pane is needed while a window ending in [p, p + size) may be open
            if p + size <= watermark:
                del self.panes[p]
        return out

    def __len__(self) -> int:
        return len(self.ends)

    def next_due(self) -> float | None:
        """Panes outlive windows: a pane is dropped once its time + size passes the watermark."""
        return min([*self.ends, *(p + self.size for p in self.panes)], default=None)

    def dump(self, encode: Callable[[S], Any]) -> Any:
        return [[[t, encode(s)] for t, s in self.panes.items()], sorted(self.ends)]

    def load(self, data: Any, decode: Callable[[Any], S]) -> None:
        panes, ends = data
        for t, state in panes:
            self.panes[t] = decode(state)
        self.ends.update(ends)


# -- sessions: merged on overlap -----------------------------------------------------------
class Session(Assigner):
    """Sessions of events less than ``gap`` seconds apart; see the module docstring."""

    def __init__(self, gap: float) -> None:
        _positive("gap", gap)
        self.gap = gap

    def key_windows(self, fold: Fold[S]) -> KeyWindows[S]:
        return _Sessions(self, fold)

    def behind(self, t: float, watermark: float | None) -> bool:
        return self.complete(t + self.gap, watermark)


class _Sessions(KeyWindows[S]):
    def __init__(self, assigner: Session, fold: Fold[S]) -> None:
        super().__init__(assigner, fold)
        self.gap = assigner.gap
        self.open: list[tuple[TimeWindow, S]] = []  # disjoint, by start

    def add(self, t: float, value: Any, watermark: float | None) -> list[TimeWindow] | None:
        end = t + self.gap
        touched = [(w, s) for w, s in self.open if w.start < end and t < w.end]
        merged = TimeWindow(min([t, *(w.start for w, _ in touched)]), max([end, *(w.end for w, _ in touched)]))
        if self.complete(merged.end, watermark):
            return None
        fold = self.fold
        state = fold.step(fold.initial(), t, value)
        before = [s for w, s in touched if w.start <= t]
        after = [s for w, s in touched if w.start > t]
        for s in reversed(before):
            state = fold.merge(s, state)
        for s in after:
            state = fold.merge(state, s)
        if touched:
            gone = {w for w, _ in touched}
            self.open = [(w, s) for w, s in self.open if w not in gone]
        self.open.append((merged, state))
        self.open.sort(key=lambda ws: ws[0].start)
        return [merged]

    def close(self, watermark: float) -> list[tuple[TimeWindow, S]]:
        due = [ws for ws in self.open if self.complete(ws[0].end, watermark)]
        if due:
            self.open = [ws for ws in self.open if ws not in due]
        return sorted(due, key=lambda ws: (ws[0].end, ws[0].start))

    def __len__(self) -> int:
        return len(self.open)

    def next_due(self) -> float | None:
        return min((w.end for w, _ in self.open), default=None)

    def dump(self, encode: Callable[[S], Any]) -> Any:
        return [[w.start, w.end, encode(s)] for w, s in self.open]

    def load(self, data: Any, decode: Callable[[Any], S]) -> None:
        self.open.extend((TimeWindow(start, end), decode(state)) for start, end, state in data)
        self.open.sort(key=lambda ws: ws[0].start)


# -- every key ----------------------------------------------------------------------------
class Windows(Generic[S]):
    """The open windows of every key: `add` events, `close` what a watermark completes."""

    def __init__(self, assigner: Assigner, fold: Fold[S]) -> None:
        self.assigner = assigner
        self.fold = fold
        self._keys: dict[Hashable, KeyWindows[S]] = {}
        #: Heap of (end, number, key): each key with open windows is due by its earliest end.
        self._ends: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}  # key -> the end of its live heap entry
        self._n = 0

    def add(self, key: Hashable, t: float, value: Any, watermark: float | None) -> list[TimeWindow] | None:
        """Fold an event of ``key`` at ``t`` in; the windows it went into, or None if it is late."""
        windows = self._keys.get(key)
        if windows is None:
            windows = self._keys[key] = self.assigner.key_windows(self.fold)
        placed = windows.add(t, value, watermark)
        if placed is None:
            if windows.next_due() is None:
                del self._keys[key]
            return None
        self._schedule(key, placed[0].end if len(placed) == 1 else min(w.end for w in placed))
        return placed

    def _schedule(self, key: Hashable, end: float) -> None:
        """Make ``key`` due by ``end`` at the latest (older, later entries go stale)."""
        due = self._due.get(key)
        if due is None or end < due:
            self._due[key] = end
            self._n += 1
            heapq.heappush(self._ends, (end, self._n, key))

    def close(self, watermark: float | None) -> list[tuple[Hashable, TimeWindow, S]]:
        """Remove and return the windows complete at ``watermark`` (None: none yet), by end then start."""
        if watermark is None:
            return []
        keys: dict[Hashable, None] = {}
        ends, complete = self._ends, self.assigner.complete
        while ends and complete(ends[0][0], watermark):
            end, _, key = heapq.heappop(ends)
            if self._due.get(key) == end:  # else a stale entry
                keys[key] = None
                del self._due[key]
        out: list[tuple[Hashable, TimeWindow, S]] = []
        for key in keys:
            windows = self._keys[key]
            out.extend((key, w, s) for w, s in windows.close(watermark))
            due = windows.next_due()
            if due is None:
                del self._keys[key]
            else:
                self._schedule(key, due)
        out.sort(key=lambda kws: (kws[1].end, kws[1].start))
        return out

    def dump(self, key: Hashable, encode: Callable[[S], Any]) -> Any:
        """The open windows of ``key`` as JSON-ready data (None: it has none), for a state store."""
        windows = self._keys.get(key)
        return None if windows is None or windows.next_due() is None else windows.dump(encode)

    def load(self, key: Hashable, data: Any, decode: Callable[[Any], S]) -> None:
        """Add the open windows of ``key`` from a `dump` (a restore)."""
        windows = self._keys.get(key)
        if windows is None:
            windows = self._keys[key] = self.assigner.key_windows(self.fold)
        windows.load(data, decode)
        due = windows.next_due()
        if due is None:
            del self._keys[key]
        else:
            self._schedule(key, due)

    def flush(self) -> list[tuple[Hashable, TimeWindow, S]]:
        """Remove and return every open window (the end of the stream), by end then start."""
        return self.close(math.inf)

    @property
    def keys(self) -> int:
        """Number of keys holding state (open windows, or sliding panes still needed)."""
        return len(self._keys)

    def __len__(self) -> int:
        """Number of open windows over all keys."""
        return sum(len(w) for w in self._keys.values())
