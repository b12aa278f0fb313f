"""`Supervisor`: runs N worker processes of one pipeline, restarts the ones that crash, stops them all.

* **Signals.** The first SIGTERM/SIGINT is forwarded to every worker as
  SIGTERM: each drains and commits as a single process does (contract 4), and
  no worker is restarted any more. A second one is forwarded again: the
  workers abort (exit 130).
* **Restarts.** A worker that exits non-zero, or is killed by a signal, while
  the supervisor is not stopping is restarted in its slot after a `Backoff`
  delay. ``restart.max_attempts`` failures in a row (a worker that ran for
  ``stable_after`` seconds starts a new row) and the supervisor gives up: it
  stops the other workers and exits with the failing worker's code. A config
  error (exit 2) is never restarted. A worker that exits 0 by itself finished.
* **Exit code.** 0 when every worker stopped cleanly; else the code of the
  worker that failed (the one it gave up on first), 130 if aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.backoff import Backoff
from ..core.result import EXIT_ABORTED, EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from ..core.settings import HttpSettings
from ..core.signals import ShutdownSignals
from .slot import WorkerCommand, WorkerSlot

if TYPE_CHECKING:
    from .server import WorkersServer

log = logging.getLogger("streamflow.workers")

#: How a crashed worker is restarted: 0.5 s, 1 s, 2 s … (jittered, at most 30 s); after 6 failures in a
#: row (5 restarts) the supervisor gives up.
RESTART = Backoff(backoff=0.5, max_backoff=30.0, max_attempts=6)
#: Seconds a worker must run before its crash no longer counts with the failures before it.
STABLE_AFTER = 60.0


class Supervisor:
    """N workers of one pipeline; `run` them until stopped or failed, returning the exit code.

    >>> Supervisor(WorkerCommand("pipeline.yaml"), 4).run_sync()
    """

    def __init__(self, command: WorkerCommand, count: int, *, http: HttpSettings | None = None,
                 restart: Backoff = RESTART, stable_after: float = STABLE_AFTER) -> None:
        self.command = command
        self.slots = [WorkerSlot(i) for i in range(count)]
        self.http = http
        self.restart = restart
        self.stable_after = stable_after
        self.failure: int | None = None
        self._stopping = asyncio.Event()
        #: Called with a slot whose process just ended (the ops server keeps its last counters).
        self.on_exit: list[Callable[[WorkerSlot], None]] = []
        #: The ops server while `run` serves one (its ``port`` is the bound port).
        self.server: WorkersServer | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_sync(self) -> int:
        """`run` on a fresh event loop."""
        return asyncio.run(self.run())

    async def run(self) -> int:
        """Start every worker and keep them running until a signal, a give-up, or all finished."""
        server = None
        if self.http is not None:
            from .server import WorkersServer

            server = self.server = WorkersServer(self, self.http)
            try:
                await server.start()
            except OSError as exc:
                log.error("cannot serve /metrics on %s:%d: %s", self.http.host, self.http.port, exc)
                return EXIT_FAILED
        log.info("starting %d workers of %s", len(self.slots), self.command.target)
        try:
            with ShutdownSignals(self.stop, self._abort).installed(asyncio.get_running_loop()):
                await asyncio.gather(*(self._keep(slot) for slot in self.slots))
        finally:
            if server is not None:
                await server.stop()
        code = self.exit_code()
        restarts = sum(slot.restarts for slot in self.slots)
        log.log(logging.INFO if code == EXIT_OK else logging.ERROR, "%d workers stopped (%d restarts): exit %d",
                len(self.slots), restarts, code)
        return code

    def exit_code(self) -> int:
        """0 if every worker's last exit was clean; the failure it gave up on; else the first non-zero one."""
        if self.failure is not None:
            return self.failure
        last = [slot.exits[-1] for slot in self.slots if slot.exits]
        if EXIT_ABORTED in last:
            return EXIT_ABORTED
        return next((code for code in last if code != EXIT_OK), EXIT_OK)

    def stop(self) -> None:
        """Stop every worker gracefully (SIGTERM) and restart none."""
        if not self.stopping:
            log.info("stopping the workers")
        self._stopping.set()
        for slot in self.slots:
            slot.signal(signal.SIGTERM)

    def _abort(self, reason: str) -> None:
        """A second signal: forwarded too, so the workers abort (exit 130)."""
        log.warning("%s: the workers abort", reason)
        self.stop()

    async def _keep(self, slot: WorkerSlot) -> None:
        """Keep slot ``slot`` filled with a running worker until stopping, giving up, or it finished."""
        failures = 0
        while not self.stopping:
            try:
                await slot.start(self.command)
            except OSError as exc:  # no process (out of pids, file descriptors, memory): not a crash to retry
                log.error("worker %d could not start: %s", slot.index, exc)
                self._give_up(slot, EXIT_FAILED, failures)
                return
            if self.stopping:  # a signal came while it started
                slot.signal(signal.SIGTERM)
            started = time.monotonic()
            log.info("worker %d started (pid %s)", slot.index, slot.pid)
            code = await slot.wait()
            if self.stopping and code == 128 + signal.SIGTERM:  # stopped before it handled signals: it had
                slot.exits[-1] = code = EXIT_OK                  # opened nothing, so nothing was lost
            for listener in self.on_exit:
                listener(slot)
            if self.stopping or code == EXIT_OK:
                slot.state = "stopped"
                log.log(logging.INFO if code == EXIT_OK else logging.ERROR, "worker %d exited with %d",
                        slot.index, code)
                return
            failures = 1 if time.monotonic() - started >= self.stable_after else failures + 1
            if code == EXIT_CONFIG or self.restart.exhausted(failures):
                self._give_up(slot, code, failures)
                return
            await self._back_off(slot, code, failures)

    def _give_up(self, slot: WorkerSlot, code: int, failures: int) -> None:
        slot.state = "failed"
        if code == EXIT_CONFIG or failures:
            why = "a config error" if code == EXIT_CONFIG else f"{failures} failures in a row"
            log.error("worker %d exited with %d: %s; giving up and stopping the other workers", slot.index, code,
                      why)
        if self.failure is None:
            self.failure = code
        self.stop()

    async def _back_off(self, slot: WorkerSlot, code: int, failures: int) -> None:
        slot.state = "restarting"
        delay = self.restart.delay(failures)
        log.warning("worker %d exited with %d; restarting it in %.1fs (failure %d in a row)",
                    slot.index, code, delay, failures)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if not self.stopping:
            slot.restarts += 1
