"""`LogThrottle`: per-event warnings that stay readable when thousands of events fail.

An error policy logs each event it skips or dead-letters (contract 5: never
silent), but one line per event buries everything else when a whole stream is
bad (613 lines for 5,000 events). A throttle logs the first ``burst`` records
of a kind in each ``interval``, counts the rest, and logs one summary line
with the count when the interval ends (or when the run ends). The counters
and metrics still count every event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

#: Records of one kind logged one by one per interval.
BURST = 5
#: Seconds of one interval.
INTERVAL = 10.0


@dataclass
class _Window:
    """One kind of record in the current interval."""

    start: float
    logged: int = 0
    suppressed: int = 0
    last: str = ""
    extra: dict[str, Any] | None = None
    timer: asyncio.TimerHandle | None = None


class LogThrottle:
    """Warnings of ``log``, at most ``burst`` per kind and ``interval``, then a summary line per interval."""

    _all: ClassVar[weakref.WeakSet[LogThrottle]] = weakref.WeakSet()

    def __init__(self, log: logging.Logger, prefix: str = "", burst: int = BURST,
                 interval: float = INTERVAL) -> None:
        self.log = log
        self.prefix = prefix
        self.burst = burst
        self.interval = interval
        self._windows: dict[str, _Window] = {}
        LogThrottle._all.add(self)

    def warning(self, kind: str, extra: dict[str, Any], msg: str, *args: Any) -> None:
        """Log ``msg % args`` unless ``burst`` records of ``kind`` were logged in this interval already;
        ``kind`` names them in the summary (``dead-lettered``, ``skipped`` …)."""
        now = time.monotonic()
        window = self._windows.get(kind)
        if window is None or now - window.start >= self.interval:
            if window is not None:
                self._summarize(window, kind)
            window = self._windows[kind] = _Window(now)
        if window.logged < self.burst:
            window.logged += 1
            self.log.warning(msg, *args, extra=extra)
            return
        window.suppressed += 1
        window.last, window.extra = (msg % args).removeprefix(self.prefix), extra
        if window.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            window.timer = loop.call_later(self.interval - (now - window.start), self._end, kind)

    def _end(self, kind: str) -> None:
        window = self._windows.pop(kind, None)
        if window is not None:
            self._summarize(window, kind)

    def _summarize(self, window: _Window, kind: str) -> None:
        if window.timer is not None:
            window.timer.cancel()
            window.timer = None
        if window.suppressed:
            elapsed = time.monotonic() - window.start
            self.log.warning("%s%d more events %s in %.0fs, not logged one by one (the last: %s)", self.prefix,
                             window.suppressed, kind, elapsed, window.last,
                             extra={**(window.extra or {}), "suppressed": window.suppressed})
            window.suppressed = 0

    def flush(self) -> None:
        """Log the summary of every interval still open."""
        for kind in list(self._windows):
            self._summarize(self._windows.pop(kind), kind)

    @classmethod
    def flush_all(cls) -> None:
        """`flush` every throttle (the runner calls it when a run ends)."""
        for throttle in list(cls._all):
            throttle.flush()
