"""The stall detector: a pipeline that makes no progress while events wait is not ready (and, if so
configured, not healthy), says so in a metric and a warning, and recovers when progress resumes; an
idle pipeline is never stalled. Plus the process, runtime and build series beside them."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySource
from streamflow.core.batch import Batch
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.core.stage import ComponentConfig, Sink
from streamflow.core.stall import StallDetector
from streamflow.observability.metrics import PipelineMetrics
from streamflow.observability.server import OpsServer


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(m: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    [found] = [v for (n, ls), v in m.items() if n == name and set(labels.items()) <= ls]
    return found


class HungSink(Sink[ComponentConfig]):
    """A sink whose writes hang until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.written = 0

    async def write(self, batch: Batch) -> None:
        await self.release.wait()
        self.written += len(batch)


def test_a_detector_stalls_only_without_progress_while_events_wait() -> None:
    d = StallDetector(timeout=10)
    assert not d.sample(5, "3 in a->b", now=100.0)
    assert not d.sample(5, "3 in a->b", now=109.0)
    assert d.sample(5, "3 in a->b", now=110.0) and d.stalls == 1
    assert not d.sample(6, "3 in a->b", now=111.0)  # progress clears it
    assert not d.sample(6, None, now=200.0)  # idle: nothing waits, never stalled
    assert not d.sample(6, None, now=300.0) and d.stalls == 1


async def until(condition: object, what: str) -> None:
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {what}")


async def test_a_hung_sink_makes_the_run_stalled_not_ready_and_optionally_unhealthy() -> None:
    sink = HungSink()
    p = (Pipeline("hung", stall_timeout=0.2, stall_unhealthy=True)
         .source(MemorySource(values=list(range(1000)), batch_size=10)).sink(sink))
    runner = Runner(p, handle_signals=False)
    metrics = PipelineMetrics.for_runner(runner)
    async with OpsServer(runner, "127.0.0.1", 0) as server:
        run = asyncio.create_task(runner.run())
        await until(lambda: runner.stalled, "stalled")
        assert not runner.ready and not runner.healthy
        m = samples(generate_latest(metrics.registry).decode())
        assert value(m, "streamflow_stalled", pipeline="hung") == 1
        assert value(m, "streamflow_ready", pipeline="hung") == 0
        assert value(m, "streamflow_stalls_total", pipeline="hung") == 1
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.port}/readyz") as resp:
                assert resp.status == 503 and "stalled: no progress" in (await resp.json())["reason"]
            async with session.get(f"http://127.0.0.1:{server.port}/healthz") as resp:
                assert resp.status == 503 and (await resp.json())["status"] == "stalled"
        sink.release.set()
        result = await run
    assert result.exit_code == EXIT_OK and sink.written == 1000
    assert not runner.stalled and runner.healthy


def test_metrics_include_process_runtime_and_build_series() -> None:
    runner = Runner(Pipeline("p").source(MemorySource(values=[1])).sink(HungSink()), handle_signals=False)
    text = generate_latest(PipelineMetrics.for_runner(runner).registry).decode()
    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info",
                   "python_gc_collections_total", "streamflow_build_info{"):
        assert series in text, series
