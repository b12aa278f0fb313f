"""`ShutdownSignals`: SIGTERM/SIGINT during a run — the first drains, a second aborts (contract 4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

log = logging.getLogger("streamflow.runner")

#: The signals that stop a run.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownSignals:
    """Turns shutdown signals into calls of ``stop()`` (the first) and ``abort(reason)`` (any later one)."""

    def __init__(self, stop: Callable[[], None], abort: Callable[[str], None]) -> None:
        self.stop = stop
        self.abort = abort
        self.received = 0

    def __call__(self, signum: int) -> None:
        """Handle one signal."""
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            log.info("received %s", name)
            self.stop()
        else:
            log.warning("received %s again: aborting", name)
            self.abort(f"aborted by second {name}")

    @contextlib.contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Handle `SIGNALS` on ``loop`` inside the block (where the platform or thread allows it)."""
        installed: list[int] = []
        try:
            for sig in SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self, sig)
                    installed.append(sig)
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
