"""Per-partition event-time watermarks (contract 9).

A watermark ``W`` is the claim "every event with an event time below ``W`` has
arrived"; a window ending at or before ``W`` is complete and an event with a
time below ``W`` is *behind* it. `WatermarkTracker` derives ``W`` from what each
input partition has shown so far:

* each partition ``p`` keeps ``max_p``, the largest event time observed on it,
  and ``seen_p``, the processing time (the tracker's clock) of its last event
  (or of when the tracker was told of it, `assign`);
* ``p`` is *idle* when ``idle_timeout`` is set and ``clock() - seen_p >=
  idle_timeout``; it is *active* again with its next event;
* the candidate is the minimum of ``max_p - allowed_lateness`` over the active
  partitions. An active partition without any event yet holds the candidate
  at None (nothing can be claimed about it). When every partition is idle the
  candidate is the maximum over all partitions instead (the stream as a whole
  has gone quiet, so nothing is held back — Flink's rule for all-idle inputs);
* the watermark is the largest candidate ever read: it never goes backwards,
  not when an idle partition resumes behind it, nor when a partition is
  forgotten or a new one appears. Their events behind it are late.

No partition at all, or only empty ones, gives None: no watermark yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable

__all__ = ["WatermarkTracker"]


class _Partition:
    """What one input partition has shown: its largest event time and when it was last heard of."""

    __slots__ = ("max_time", "seen")

    def __init__(self, seen: float) -> None:
        self.max_time: float | None = None
        self.seen = seen


class WatermarkTracker:
    """The watermark of one stage's input: minimum over partitions of (max event time - lateness)."""

    def __init__(self, allowed_lateness: float = 0.0, idle_timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if allowed_lateness < 0:
            raise ValueError(f"allowed_lateness must be >= 0, got {allowed_lateness}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0, got {idle_timeout}")
        self.allowed_lateness = allowed_lateness
        self.idle_timeout = idle_timeout
        #: Processing time in seconds (monotonic); injectable for tests.
        self.clock = clock
        self._partitions: dict[Hashable, _Partition] = {}
        self._watermark: float | None = None

    def assign(self, partitions: Iterable[Hashable]) -> None:
        """Start tracking ``partitions`` before their first event: they hold the watermark back.

        Until it has an event (or goes idle), a partition assigned here keeps
        the watermark where it is. Known partitions are left as they are.
        """
        now = self.clock()
        for p in partitions:
            if p not in self._partitions:
                self._partitions[p] = _Partition(now)

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Stop tracking ``partitions`` (revoked); the watermark stays where it is."""
        for p in partitions:
            self._partitions.pop(p, None)

    def observe(self, partition: Hashable, event_time: float) -> None:
        """Record an event of ``partition`` at ``event_time`` (seconds); the partition is active."""
        state = self._partitions.get(partition)
        now = self.clock()
        if state is None:
            state = self._partitions[partition] = _Partition(now)
        else:
            state.seen = now
        if state.max_time is None or event_time > state.max_time:
            state.max_time = event_time

    def max_time(self, partition: Hashable) -> float | None:
        """The largest event time seen on ``partition`` (None: none yet, or unknown)."""
        state = self._partitions.get(partition)
        return None if state is None else state.max_time

    def idle(self, partition: Hashable) -> bool:
        """Whether ``partition`` has had no event for ``idle_timeout`` (False if unknown)."""
        state = self._partitions.get(partition)
        return state is not None and self._is_idle(state, self.clock())

    def _is_idle(self, state: _Partition, now: float) -> bool:
        return self.idle_timeout is not None and now - state.seen >= self.idle_timeout

    @property
    def watermark(self) -> float | None:
        """The current watermark (None: none yet); see the module docstring for the rule."""
        candidate = self._candidate()
        if candidate is not None and (self._watermark is None or candidate > self._watermark):
            self._watermark = candidate
        return self._watermark

    def _candidate(self) -> float | None:
        """Minimum over active partitions, or maximum when all are idle; None when unknown."""
        now = self.clock()
        active: list[float] = []
        idle: list[float] = []
        for state in self._partitions.values():
            if self._is_idle(state, now):
                if state.max_time is not None:
                    idle.append(state.max_time)
            elif state.max_time is None:
                return None
            else:
                active.append(state.max_time)
        if active:
            return min(active) - self.allowed_lateness
        return max(idle) - self.allowed_lateness if idle else None

    def behind(self, event_time: float) -> bool:
        """Whether an event at ``event_time`` is behind the watermark (its time is below it)."""
        watermark = self.watermark
        return watermark is not None and event_time < watermark
