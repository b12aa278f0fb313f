"""`streamflow run --workers N`: N processes of one pipeline on one host, under one supervisor.

Each worker is the pipeline run as a single process runs it, and a member of
its Kafka consumer group: Kafka spreads the partitions over them, as over N
containers. The supervisor (`Supervisor`) forwards signals, restarts a worker
that crashes, exits with the right code, and serves one ``/metrics`` (summed),
``/readyz`` and ``/healthz`` for all of them (`WorkersServer`).

    from streamflow.workers import run_workers
    exit_code = run_workers("pipeline.yaml", workers=4)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..core.errors import ConfigError
from ..core.pipeline import Pipeline
from ..loading import load
from .slot import WorkerCommand
from .supervisor import RESTART, STABLE_AFTER, Supervisor
from .worker import WORKER_ENV

__all__ = ["Supervisor", "WorkerCommand", "RESTART", "STABLE_AFTER", "WORKER_ENV", "resolve_workers",
           "scale_out_problems", "run_workers"]


def resolve_workers(value: str | int) -> int:
    """The number of workers ``--workers`` asks for: a positive integer, or ``auto`` (the usable cores)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"expected a positive integer or 'auto', not {value!r}") from None
    if count < 1:
        raise ValueError(f"expected a positive integer or 'auto', not {value!r}")
    return count


def scale_out_problems(pipeline: Pipeline, target: str, workers: int) -> ConfigError | None:
    """Why ``pipeline`` cannot run as ``workers`` processes (each source's `Source.scale_out_problem`)."""
    problems = [f"{target}: --workers {workers}: source {source.name!r}: {problem}"
                for source in pipeline.sources if (problem := source.scale_out_problem()) is not None]
    return ConfigError("\n".join(problems)) if problems else None


def run_workers(target: str, overrides: Sequence[str] = (), *, workers: int, pipeline: Pipeline | None = None,
                log_format: str = "text", log_level: str = "INFO") -> int:
    """Run ``target`` as ``workers`` processes under a `Supervisor`; returns the exit code.

    The pipeline is loaded and checked here first (``pipeline``, if the caller
    already loaded it), so a config error — including a source that several
    processes cannot share — raises `ConfigError` before any worker starts.
    The ops server is the pipeline's ``settings.http``, if set.
    """
    if pipeline is None:
        pipeline = load(target, overrides, check_files=True)
    problem = scale_out_problems(pipeline, target, workers)
    if problem is not None:
        raise problem
    command = WorkerCommand(target, tuple(overrides), log_format, log_level)
    return Supervisor(command, workers, http=pipeline.settings.http).run_sync()
