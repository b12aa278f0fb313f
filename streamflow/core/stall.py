"""`StallDetector`: notices a pipeline that makes no progress while events wait for it.

A hung sink (a write that never returns, a remote end that stopped
answering) holds the source back through backpressure, so nothing fails and
nothing is logged: the pipeline just stops. The detector watches the stage
counters; when none of them moved for ``stall_timeout`` seconds while events
wait — queued in a channel, or in a sink write still running — the run is
*stalled*: `Runner.ready` turns false (``/readyz`` 503), ``streamflow_stalled``
is 1 and a warning says where the events wait. An idle pipeline (no input) is
never stalled. Progress clears it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from .channel import Channel
from .stats import StageStats

log = logging.getLogger("streamflow.runner")


def progress_of(stats: Sequence[StageStats]) -> int:
    """A number that grows whenever any stage finishes work on an event."""
    return sum(s.events_in + s.events_out + s.filtered + s.dead_lettered + s.skipped + s.blank for s in stats)


class StallDetector:
    """Decides, from periodic samples, whether a run is stalled; counts the stalls."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.stalled = False
        #: Stalls seen since the run started.
        self.stalls = 0
        self._progress = -1
        self._since = time.monotonic()

    def seconds_without_progress(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self._since

    def sample(self, progress: int, waiting: str | None, now: float | None = None) -> bool:
        """Take one sample: the progress number and where events wait (None: nowhere). True once stalled."""
        now = time.monotonic() if now is None else now
        if progress != self._progress or waiting is None:
            if self.stalled:
                log.info("pipeline is making progress again")
            self._progress, self._since, self.stalled = progress, now, False
            return False
        if not self.stalled and now - self._since >= self.timeout:
            self.stalled = True
            self.stalls += 1
            log.warning("pipeline stalled: no progress for %.0fs while events wait (%s)", now - self._since,
                        waiting)
        return self.stalled

    async def watch(self, stats: Callable[[], Sequence[StageStats]], channels: Sequence[Channel],
                    writing: Callable[[], list[str]]) -> None:
        """Sample every quarter of the timeout (at most every second) until cancelled."""
        interval = min(1.0, self.timeout / 4)
        while True:
            await asyncio.sleep(interval)
            self.sample(progress_of(stats()), waiting_where(channels, writing()))


def waiting_where(channels: Sequence[Channel], writing: list[str]) -> str | None:
    """Where events wait: the channels holding some and the sinks with a write running; None if nowhere."""
    places = [f"{ch.events} in {ch.name}" for ch in channels if ch.events]
    places += [f"a write to {name} running" for name in writing]
    return ", ".join(places) or None
