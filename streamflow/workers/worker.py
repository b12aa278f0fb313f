"""One worker process of `streamflow run --workers N`: the pipeline, run as today, told what it is.

The supervisor starts ``python -m streamflow.workers`` with the
pipeline's target and ``--set`` overrides, the worker's index, and two pipe
descriptors:

* the *status* pipe (worker -> supervisor) carries one line, ``port N``: where
  this worker's own ops server (plain HTTP on 127.0.0.1, a free port) answers
  the supervisor's scrapes of ``/metrics``, ``/readyz`` and ``/healthz``;
* the *lifeline* pipe (supervisor -> worker) carries nothing: it reaches end of
  file when the supervisor is gone, however it died, and the worker then stops
  gracefully as on SIGTERM instead of running on as an orphan.

Workers run in their own session, so a Ctrl-C on the terminal reaches only the
supervisor, which forwards it once. ``$STREAMFLOW_WORKER`` holds the index
(``${STREAMFLOW_WORKER}`` in YAML, e.g. in a header naming the writer).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING

from ..core.errors import ConfigError
from ..core.pipeline import Pipeline
from ..core.result import EXIT_CONFIG, EXIT_OK
from ..loading import load
from ..observability.logging import log_config_error, redact, setup_logging
from ..observability.server import serve

if TYPE_CHECKING:
    from ..core.runner import Runner

log = logging.getLogger("streamflow.workers")

#: The environment variable holding a worker's index (0-based).
WORKER_ENV = "STREAMFLOW_WORKER"

Watcher = Callable[["Runner"], Awaitable[None]]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's command line (written by `Supervisor`, not by people)."""
    parser = argparse.ArgumentParser(prog="python -m streamflow.workers")
    parser.add_argument("target")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--lifeline-fd", type=int, required=True)
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


class WorkerLogs(logging.Filter):
    """Marks a worker's log records with its index: a ``worker`` field in JSON, ``logger[index]`` in text."""

    def __init__(self, index: int, log_format: str) -> None:
        super().__init__()
        self.index = index
        self.text = log_format != "json"

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        if self.text:
            record.name = f"{record.name}[{self.index}]"
        return True


def worker_pipeline(target: str, overrides: list[str], index: int) -> Pipeline:
    """The pipeline as worker ``index`` runs it: each source told its worker index (`Source.as_worker`).

    ``settings.http`` is the supervisor's: the worker serves its own endpoints on a free loopback port,
    in plain HTTP, for the supervisor alone (`status_server`)."""
    pipeline = load(target, overrides, check_files=True)
    for source in pipeline.sources:
        source.as_worker(index)
    return pipeline


def status_server(status: IO[str]) -> Watcher:
    """A runner watcher serving the worker's ops endpoints and telling the supervisor the port."""
    def bound(port: int) -> None:
        status.write(f"port {port}\n")
        status.flush()

    return lambda runner: serve(runner, "127.0.0.1", 0, on_bound=bound)


def lifeline(fd: int) -> Watcher:
    """A runner watcher that stops the run gracefully (as SIGTERM does) once the supervisor is gone."""
    async def watch(runner: Runner) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(fd, "rb"))
        try:
            await reader.read()  # nothing is ever written: this returns at end of file
            log.warning("worker: the supervisor is gone; stopping")
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            transport.close()

    return watch


def main(argv: list[str] | None = None) -> int:
    """Run one worker; returns its exit code (the codes of `streamflow run`)."""
    args = arguments(argv)
    os.environ[WORKER_ENV] = str(args.index)
    setup_logging(args.log_format, args.log_level).addFilter(WorkerLogs(args.index, args.log_format))
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # as the CLI does: 'module:function' names resolve from the current directory
    try:
        pipeline = worker_pipeline(args.target, args.overrides, args.index)
    except ConfigError as exc:  # the supervisor validated first; only a changed file or environment gets here
        log_config_error(exc)
        return EXIT_CONFIG
    with os.fdopen(args.status_fd, "w") as status:
        result = pipeline.run(watchers=[status_server(status), lifeline(args.lifeline_fd)])
    level = logging.INFO if result.exit_code == EXIT_OK else logging.ERROR
    log.log(level, "worker %d: %s", args.index, redact(result.summary()), extra={"exit_code": result.exit_code})
    return result.exit_code

