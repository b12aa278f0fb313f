"""Keeps aiokafka's logging readable during a broker outage.

While a broker is unreachable aiokafka logs the same few errors in tight
loops (thousands of lines a second). `quiet_repeats` lets the first of each
kind through, drops identical repeats for ``window`` seconds, and then says how
many were dropped. Nothing else is changed: levels and handlers stay the user's.
"""

from __future__ import annotations

import logging
import time

#: aiokafka loggers that repeat themselves while a broker is down.
NOISY_LOGGERS = (
    "aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator", "aiokafka.producer.sender", "aiokafka.producer.producer",
)


class RepeatFilter(logging.Filter):
    """Drops a log record identical (logger, level, message template) to one let through recently."""

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [last emitted, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg = f"{record.msg} [{int(entry[1])} identical messages suppressed]"
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = [now, 0]
        return True


_installed = False


def quiet_repeats(window: float = 10.0) -> None:
    """Install a `RepeatFilter` on aiokafka's noisy loggers (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    repeat = RepeatFilter(window)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(repeat)
