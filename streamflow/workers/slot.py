"""`WorkerSlot`: one place of N in `streamflow run --workers N`, and the worker process that fills it.

A slot outlives its processes: when a worker crashes the supervisor starts
another one in the same slot (same index, next ``generation``). The slot
starts the process with its two pipes (see `streamflow.workers.worker`),
learns the port of its ops server, and reports how the process ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.result import EXIT_ABORTED


@dataclass(frozen=True)
class WorkerCommand:
    """What every worker runs: the pipeline ``target``, its ``--set`` overrides and the log settings."""

    target: str
    overrides: Sequence[str] = ()
    log_format: str = "text"
    log_level: str = "INFO"

    def argv(self, index: int, status_fd: int, lifeline_fd: int) -> list[str]:
        """The command line of worker ``index``."""
        sets = [arg for item in self.overrides for arg in ("--set", item)]
        return [sys.executable, "-m", "streamflow.workers", "--index", str(index),
                "--status-fd", str(status_fd), "--lifeline-fd", str(lifeline_fd),
                "--log-format", self.log_format, "--log-level", self.log_level, *sets, self.target]


def exit_code(returncode: int) -> int:
    """A process's exit code as a shell reports it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class WorkerSlot:
    """Slot ``index``: its current process (if any), that process's ops port, and its history."""

    index: int
    generation: int = 0
    restarts: int = 0
    state: str = "starting"  # starting, running, restarting, stopped, failed
    process: asyncio.subprocess.Process | None = None
    port: int | None = None
    exits: list[int] = field(default_factory=list)
    _lifeline: int | None = None
    _status: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.returncode is None else None

    async def start(self, command: WorkerCommand) -> None:
        """Start a new worker process in this slot (the next generation)."""
        status_r, status_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        try:
            self.process = await asyncio.create_subprocess_exec(
                *command.argv(self.index, status_w, lifeline_r), stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(status_w, lifeline_r), start_new_session=True)
        except BaseException:
            for fd in (status_r, lifeline_w):
                os.close(fd)
            raise
        finally:
            os.close(status_w)
            os.close(lifeline_r)
        self.generation += 1
        self.port = None
        self.state = "running"
        self._lifeline = lifeline_w  # held open, never written: the worker stops at its end of file
        self._status = asyncio.create_task(self._read_status(status_r), name=f"worker-{self.index}-status")

    async def _read_status(self, fd: int) -> None:
        """Read the worker's ``port N`` line (the pipe ends when the process does)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(fd, "rb"))
        try:
            while line := await reader.readline():
                word, _, value = line.decode().partition(" ")
                if word == "port":
                    self.port = int(value)
        finally:
            transport.close()

    async def wait(self) -> int:
        """Wait for the current process to end; its exit code (128 + N when killed by signal N)."""
        assert self.process is not None
        code = exit_code(await self.process.wait())
        self.port = None
        if self._status is not None:
            self._status.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._status
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        self.exits.append(code)
        return code

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the current process, if it is still running."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    @property
    def aborted(self) -> bool:
        """The last process ended aborted (a second signal reached it)."""
        return bool(self.exits) and self.exits[-1] == EXIT_ABORTED
