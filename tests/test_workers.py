"""`streamflow run --workers N` without a broker: the config checks, the supervisor's restarts, signals and
exit codes (real worker processes running generator pipelines), and the summing of the workers' metrics.

The Kafka side — workers sharing partitions, kill -9 and restart, nothing lost — is in test_workers_kafka.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from streamflow.core.backoff import Backoff
from streamflow.core.settings import HttpSettings
from streamflow.workers import Supervisor, WorkerCommand, resolve_workers
from streamflow.workers.aggregate import MetricsAggregate, parse

ROOT = Path(__file__).resolve().parent.parent

GATED = '''
import asyncio, os
from streamflow import Pipeline
from streamflow.connectors.generator import GeneratorSource
from streamflow.connectors.files_sink import FileSink


class GatedSource(GeneratorSource):
    """Connects only once the file ``open.gate`` exists (a broker coming up)."""

    async def open(self, ctx):
        await super().open(ctx)
        while not os.path.exists("open.gate"):
            await asyncio.sleep(0.05)


pipeline = Pipeline("gated").source(GatedSource(rate=100, batch_size=10)).sink(
    FileSink(path=f"out-{os.environ.get('STREAMFLOW_WORKER')}.jsonl"))
'''

HANG = '''
import asyncio


async def hang(value):
    await asyncio.sleep(3600)
'''

FAIL = '''
def boom(value):
    raise RuntimeError("this worker always fails")
'''


def write(tmp_path: Path, source: dict[str, Any], stages: list[dict[str, Any]] | None = None,
          name: str = "pipeline.yaml") -> Path:
    """A pipeline writing to out-<worker>.jsonl (one file per worker process), as JSON (which is YAML)."""
    doc = {"name": "w", "settings": {"shutdown_timeout": 20}, "source": source, "stages": stages or [],
           "sink": {"type": "file", "path": str(tmp_path / "out-${STREAMFLOW_WORKER:-none}.jsonl")}}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` (maybe async) until truthy; fail with ``what`` after ``timeout`` seconds."""
    async def value() -> Any:
        result = check()
        return await result if inspect.isawaitable(result) else result

    try:
        async with asyncio.timeout(timeout):
            while not (result := await value()):
                await asyncio.sleep(0.05)
            return result
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Workers import streamflow from this tree and the test's modules from ``tmp_path``."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)


# -- --workers: the value, and the sources several processes cannot share ----------------------------
def test_workers_value_is_a_count_or_auto() -> None:
    assert resolve_workers("3") == 3 and resolve_workers(1) == 1
    assert resolve_workers("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-2", "many"):
        with pytest.raises(ValueError, match="positive integer or 'auto'"):
            resolve_workers(bad)


@pytest.mark.parametrize("source", [{"type": "file", "path": "in.jsonl"}, {"type": "generator", "count": 5},
                                    {"type": "stdin"}])
def test_a_source_that_cannot_be_shared_is_a_config_error(tmp_path: Path, source: dict[str, Any]) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n')
    path = write(tmp_path, source)
    proc = subprocess.run([sys.executable, "-m", "streamflow.cli", "run", "--workers", "2", str(path)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count(f"--workers 2: source {source['type']!r}: a {source['type']} source has one input") == 1
    assert "run it with --workers 1" in proc.stderr
    assert "starting" not in proc.stderr and not list(tmp_path.glob("out-*")), "a worker started"


def test_one_worker_runs_in_the_same_process_as_before(tmp_path: Path) -> None:
    path = write(tmp_path, {"type": "generator", "count": 20})
    proc = subprocess.run([sys.executable, "-m", "streamflow.cli", "run", "--workers", "1", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert lines(tmp_path / "out-none.jsonl") == 20  # no worker index: no worker process
    assert "workers" not in proc.stderr


# -- the supervisor: restarts, exit codes, signals ----------------------------------------------------
async def test_workers_that_finish_exit_0_without_restarts(tmp_path: Path) -> None:
    supervisor = Supervisor(WorkerCommand(str(write(tmp_path, {"type": "generator", "count": 50}))), 2)
    assert await supervisor.run() == 0
    assert [lines(tmp_path / f"out-{i}.jsonl") for i in range(2)] == [50, 50]
    assert [(s.exits, s.restarts) for s in supervisor.slots] == [([0], 0), ([0], 0)]


async def test_a_worker_failing_again_and_again_is_given_up_with_its_code(tmp_path: Path) -> None:
    (tmp_path / "wfail.py").write_text(FAIL)
    path = write(tmp_path, {"type": "generator", "count": 5}, [{"type": "map", "fn": "wfail:boom"}])
    restart = Backoff(backoff=0.01, max_backoff=0.05, max_attempts=3)
    supervisor = Supervisor(WorkerCommand(str(path)), 2, restart=restart)
    assert await supervisor.run() == 1
    failed = [s for s in supervisor.slots if s.state == "failed"]
    assert failed and failed[0].exits == [1, 1, 1] and failed[0].restarts == 2


async def test_a_config_error_in_a_worker_is_not_restarted(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: w\nsource: {type: generator, count: 5, nope: 1}\nsink: {type: stdout}\n")
    supervisor = Supervisor(WorkerCommand(str(path)), 2)
    assert await supervisor.run() == 2
    assert all(s.restarts == 0 for s in supervisor.slots)
    assert sorted(s.exits[-1] for s in supervisor.slots) in ([0, 2], [2, 2])  # the other one: stopped


async def test_a_killed_worker_is_restarted_and_a_stop_drains_every_worker(tmp_path: Path) -> None:
    path = write(tmp_path, {"type": "generator", "rate": 200, "batch_size": 20})
    supervisor = Supervisor(WorkerCommand(str(path)), 2, restart=Backoff(backoff=0.01, max_backoff=0.05))
    task = asyncio.create_task(supervisor.run())
    slot = supervisor.slots[0]
    await until("both workers writing", lambda: lines(tmp_path / "out-0.jsonl") and lines(tmp_path / "out-1.jsonl"))
    first = slot.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await until("worker 0 restarted", lambda: slot.restarts == 1 and slot.pid not in (None, first))
    assert slot.exits == [128 + signal.SIGKILL]
    written = lines(tmp_path / "out-0.jsonl")
    await until("the new worker 0 writing", lambda: lines(tmp_path / "out-0.jsonl") > written)
    supervisor.stop()
    assert await asyncio.wait_for(task, 60) == 0
    assert [s.exits[-1] for s in supervisor.slots] == [0, 0]


def start_supervisor(path: Path, log: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A process running `Supervisor` with 2 workers of ``path``, logging (its and theirs) into ``log``."""
    code = ("from streamflow.observability.logging import setup_logging; from streamflow.workers import *; "
            f"setup_logging('text', 'INFO'); raise SystemExit(Supervisor(WorkerCommand({str(path)!r}), 2).run_sync())")
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT), log


def summaries(text: str) -> dict[str, str]:
    """Worker index -> events written, from each worker's summary line after its runner stopped."""
    return dict(re.findall(r"worker (\d): stopped: \d+ in, (\d+) out", text))


def in_files(tmp_path: Path) -> dict[str, str]:
    """Worker index -> events in its output file."""
    return {str(i): str(lines(tmp_path / f"out-{i}.jsonl")) for i in range(2)}


def test_sigterm_is_forwarded_and_every_worker_drains(tmp_path: Path) -> None:
    path = write(tmp_path, {"type": "generator", "rate": 200, "batch_size": 20})
    proc, log = start_supervisor(path, tmp_path / "supervisor.log")
    try:
        asyncio.run(until("both workers writing",
                          lambda: lines(tmp_path / "out-0.jsonl") and lines(tmp_path / "out-1.jsonl")))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "received SIGTERM" in text and "stopping the workers" in text
    # each worker's runner got the signal and drained: what it says it wrote is in its file
    assert summaries(text) == in_files(tmp_path), text


async def get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.json()


async def ready(port: int) -> bool:
    return (await get(port, "/readyz"))[0] == 200


async def test_readyz_waits_for_every_worker_and_healthz_names_them(tmp_path: Path) -> None:
    (tmp_path / "gated.py").write_text(GATED)
    supervisor = Supervisor(WorkerCommand("gated.py"), 2, http=HttpSettings(port=0))
    task = asyncio.create_task(supervisor.run())
    port = await until("the ops server", lambda: supervisor.server is not None and supervisor.server.port)
    await until("both workers serving", lambda: all(s.port for s in supervisor.slots))
    status, body = await get(port, "/readyz")
    assert status == 503 and body["not_ready"] == ["0", "1"], body
    assert "worker 0: pipeline is starting" in body["reason"] and "worker 1: " in body["reason"]
    status, body = await get(port, "/healthz")
    assert status == 200 and [w["pid"] for w in body["workers"].values()] == [s.pid for s in supervisor.slots]
    (tmp_path / "open.gate").touch()
    await until("/readyz 200", lambda: ready(port))
    supervisor.stop()
    assert await task == 0
    assert all(int(count) > 0 for count in in_files(tmp_path).values())


def test_a_second_signal_aborts_the_workers_and_exits_130(tmp_path: Path) -> None:
    (tmp_path / "whang.py").write_text(HANG)
    path = write(tmp_path, {"type": "generator", "rate": 100, "batch_size": 10}, [{"type": "map", "fn": "whang:hang"}])
    proc, log = start_supervisor(path, tmp_path / "supervisor.log")
    try:
        # a worker's ops server starts once its runner handles signals
        asyncio.run(until("both workers running", lambda: log.read_text().count("serving /metrics") == 2))
        proc.send_signal(signal.SIGTERM)  # the workers drain, and hang on the stage that never returns
        asyncio.run(until("the workers draining", lambda: log.read_text().count("draining the pipeline") == 2))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert log.read_text().count("received SIGTERM again") == 3  # the supervisor's, forwarded to both


def alive(pid: int) -> bool:
    """The process runs (a zombie waiting for its new parent to reap it does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_workers_stop_gracefully_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    path = write(tmp_path, {"type": "generator", "rate": 200, "batch_size": 20})
    proc, log = start_supervisor(path, tmp_path / "supervisor.log")
    asyncio.run(until("both workers writing",
                      lambda: lines(tmp_path / "out-0.jsonl") and lines(tmp_path / "out-1.jsonl")))
    pids = [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)", log.read_text())]
    assert len(pids) == 2
    proc.kill()
    proc.wait(30)
    try:
        asyncio.run(until("the orphaned workers to stop", lambda: not any(alive(pid) for pid in pids), 60))
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    text = log.read_text()
    assert "the supervisor is gone; stopping" in text
    assert summaries(text) == in_files(tmp_path), text


# -- /metrics: the workers' metrics as one ------------------------------------------------------------
def worker_text(events: float, depth: float, seconds: list[float]) -> str:
    """One worker's /metrics text, written by prometheus-client as a worker's registry would be."""
    registry = CollectorRegistry()
    Counter("streamflow_events_in", "Events.", ["stage"], registry=registry).labels("src").inc(events)
    Gauge("streamflow_channel_depth_events", "Depth.", ["channel"], registry=registry).labels("a").set(depth)
    histogram = Histogram("streamflow_stage_batch_seconds", "Latency.", buckets=(0.1, 1.0), registry=registry)
    for s in seconds:
        histogram.observe(s)
    return generate_latest(registry).decode()


def samples(families: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def render(aggregate: MetricsAggregate, gauges: dict[int, Any]) -> dict[Any, float]:
    """The aggregate as the Prometheus text the server sends, parsed back (so it must be valid)."""
    registry = CollectorRegistry(auto_describe=False)
    metrics = list(aggregate.collect(gauges))

    class Collected:
        def collect(self) -> Any:
            return metrics

    registry.register(Collected())  # type: ignore[arg-type]
    openmetrics = samples(openmetrics_families(openmetrics_latest(registry).decode()))  # valid OpenMetrics too
    assert not any(name.endswith("_created") for name, _ in openmetrics), "start times are not summed"
    return samples(text_string_to_metric_families(generate_latest(registry).decode()))


def test_counters_and_histograms_are_summed_gauges_are_per_worker() -> None:
    aggregate = MetricsAggregate()
    scraped = {0: parse(worker_text(100, 3, [0.05, 0.5])), 1: parse(worker_text(250, 7, [2.0]))}
    for worker, families in scraped.items():
        aggregate.update(worker, 1, families)
    got = render(aggregate, scraped)
    assert got[("streamflow_events_in_total", (("stage", "src"),))] == 350
    assert got[("streamflow_stage_batch_seconds_bucket", (("le", "0.1"),))] == 1
    assert got[("streamflow_stage_batch_seconds_bucket", (("le", "+Inf"),))] == 3
    assert got[("streamflow_stage_batch_seconds_count", ())] == 3
    assert got[("streamflow_channel_depth_events", (("channel", "a"), ("worker", "0")))] == 3
    assert got[("streamflow_channel_depth_events", (("channel", "a"), ("worker", "1")))] == 7
    assert not any(dict(labels).get("worker") for name, labels in got if name.endswith("_total"))


def test_a_restarted_worker_does_not_take_the_sums_down() -> None:
    aggregate = MetricsAggregate()
    aggregate.update(0, 1, parse(worker_text(100, 0, [])))
    aggregate.update(1, 1, parse(worker_text(250, 0, [])))
    key = ("streamflow_events_in_total", (("stage", "src"),))
    assert render(aggregate, {})[key] == 350
    aggregate.retire(1)  # worker 1 crashed: what it counted stays counted
    assert render(aggregate, {})[key] == 350
    aggregate.update(1, 2, parse(worker_text(10, 0, [])))  # its next process counts from zero
    assert render(aggregate, {})[key] == 360
    aggregate.update(0, 2, parse(worker_text(5, 0, [])))  # a restart seen only through a new generation
    assert render(aggregate, {})[key] == 365
