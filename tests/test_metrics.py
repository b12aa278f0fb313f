"""Prometheus metrics: scraped over real HTTP, the numbers equal what the run did."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from restoring_stage import RestoringStage, finish

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.batch import Batch
from streamflow.core.message import Message
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.core.stage import Source
from streamflow.observability.metrics import PipelineMetrics, partition_labels
from streamflow.observability.server import OpsServer, serve
from streamflow.state.changelog import RestoreProgress


async def scrape(port: int) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """(content type, {(sample name, labels): value}) of /metrics."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
            ctype = resp.headers["Content-Type"]
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return ctype, samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The one sample named ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def skip_sevens(v: int) -> int:
    if v % 7 == 0:
        raise ValueError("seven")
    return v * 2


async def test_counters_after_a_run_equal_what_the_run_did() -> None:
    src = MemorySource(values=list(range(1000)), batch_size=50, name="in")
    out = MemorySink(name="out")
    p = (Pipeline("orders", http={"host": "127.0.0.1", "port": 0},
                  channel={"max_batches": 3, "max_events": 500})
         .source(src)
         .filter(lambda v: v % 2 == 0, name="evens")
         .map(skip_sevens, on_error="skip", name="double")
         .sink(out))
    runner = Runner(p, handle_signals=False)
    async with OpsServer(runner, "127.0.0.1", 0) as server:
        assert server.port
        result = await runner.run()
        ctype, m = await scrape(server.port)
    assert result.exit_code == EXIT_OK
    assert ctype.startswith("text/plain") and "version=" in ctype

    evens = [v for v in range(1000) if v % 2 == 0]
    sevens = [v for v in evens if v % 7 == 0]
    assert len(out.values) == len(evens) - len(sevens)
    assert value(m, "streamflow_events_out_total", stage="in", kind="source", pipeline="orders") == 1000
    assert value(m, "streamflow_batches_out_total", stage="in") == 20
    assert value(m, "streamflow_events_in_total", stage="evens", kind="transform") == 1000
    assert value(m, "streamflow_filtered_total", stage="evens") == 500
    assert value(m, "streamflow_events_in_total", stage="double") == 500
    assert value(m, "streamflow_errors_total", stage="double") == len(sevens)
    assert value(m, "streamflow_skipped_total", stage="double") == len(sevens)
    assert value(m, "streamflow_events_in_total", stage="out", kind="sink") == len(out.values)
    assert value(m, "streamflow_events_out_total", stage="out", kind="sink") == len(out.values)
    assert value(m, "streamflow_dead_lettered_total", stage="out") == 0
    assert value(m, "streamflow_commits_total", stage="in") >= 1

    # histograms: one observation per batch
    assert value(m, "streamflow_stage_batch_seconds_count", stage="double", kind="transform") == 20
    assert value(m, "streamflow_stage_batch_seconds_count", stage="out", kind="sink") == 20
    assert value(m, "streamflow_stage_batch_seconds_bucket", stage="out", le="+Inf") == 20
    assert value(m, "streamflow_end_to_end_seconds_count", sink="out") == 20
    assert value(m, "streamflow_end_to_end_seconds_sum", sink="out") > 0

    # channels: capacities from the settings, everything drained, every batch went through
    assert value(m, "streamflow_channel_capacity_batches", channel="sources->evens") == 3
    assert value(m, "streamflow_channel_capacity_events", channel="->out") == 500
    assert value(m, "streamflow_channel_depth_batches", channel="sources->evens") == 0
    assert value(m, "streamflow_channel_batches_total", channel="->out") == 20
    assert value(m, "streamflow_channel_blocked_seconds_total", channel="sources->evens") >= 0

    assert value(m, "streamflow_up", pipeline="orders") == 1
    assert value(m, "streamflow_ready", pipeline="orders") == 0
    assert value(m, "streamflow_state", pipeline="orders", state="stopped") == 1
    assert value(m, "streamflow_source_pending_batches", source="in") == 0


class GatedSource(Source):
    """Emits ``first`` events, then waits for ``gate`` before emitting ``rest``; reports a lag."""

    def __init__(self, first: int, rest: int) -> None:
        super().__init__(name="gated")
        self.first, self.rest = first, rest
        self.gate = asyncio.Event()
        self.sent = 0

    async def read(self) -> Batch | None:
        if self.sent == self.first:
            await self.gate.wait()
        if self.sent == self.first + self.rest:
            return None
        n = self.first if self.sent < self.first else self.rest
        msgs = [Message(i, timestamp=1.0) for i in range(self.sent, self.sent + n)]
        self.sent += n
        return Batch(msgs, [self.tracker.track(0, self.sent)])

    def lag(self) -> dict[Any, int]:
        left = self.first + self.rest - self.sent
        return {("orders", 0): left, ("orders", 1): 7}


async def test_scrape_while_running_and_consumer_lag() -> None:
    src = GatedSource(first=30, rest=12)
    out = MemorySink(name="out")
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    runner = Runner(Pipeline("live").source(src).sink(out), handle_signals=False,
                    watchers=[lambda r: serve(r, "127.0.0.1", 0, on_bound=bound.set_result)])
    task = asyncio.create_task(runner.run())
    port = await bound
    for _ in range(500):  # until the first batch is written
        if len(out.values) == 30:
            break
        await asyncio.sleep(0.01)
    _, m = await scrape(port)
    assert value(m, "streamflow_events_out_total", stage="gated") == 30
    assert value(m, "streamflow_events_out_total", stage="out") == 30
    assert value(m, "streamflow_consumer_lag", source="gated", topic="orders", partition="0") == 12
    assert value(m, "streamflow_consumer_lag", source="gated", topic="orders", partition="1") == 7
    assert value(m, "streamflow_ready") == 1 and value(m, "streamflow_state", state="running") == 1
    # event age is measured from the message timestamp (epoch 1.0: very old)
    assert value(m, "streamflow_event_age_seconds_count", sink="out") == 1
    assert value(m, "streamflow_event_age_seconds_bucket", sink="out", le="300.0") == 0
    src.gate.set()
    result = await task
    assert result.exit_code == EXIT_OK and len(out.values) == 42


def test_metrics_are_per_runner_and_registered_once() -> None:
    a = Runner(Pipeline("a").source(MemorySource(values=[1])).sink(MemorySink()), handle_signals=False)
    b = Runner(Pipeline("b").source(MemorySource(values=[1])).sink(MemorySink()), handle_signals=False)
    ma, mb = PipelineMetrics.for_runner(a), PipelineMetrics.for_runner(b)
    assert ma is PipelineMetrics.for_runner(a) and ma.registry is not mb.registry
    assert a.hooks.count(ma) == 1


def test_partition_labels() -> None:
    class TP:
        topic, partition = "t", 3

    assert partition_labels(TP()) == ("t", "3")
    assert partition_labels(("t", 1)) == ("t", "1")
    assert partition_labels(0) == ("", "0")


def test_state_restore_metrics_while_restoring_and_once_restored() -> None:
    balance0 = RestoreProgress("balance", 0, start=0, end=100, position=60, records=55)
    balance1 = RestoreProgress("balance", 1, start=10, end=10, position=10, records=0, done=True)
    runner = Runner(Pipeline("bank").source(MemorySource(values=[1]))
                    .transform(RestoringStage("accounts", [balance0, balance1]))
                    .map(lambda v: v, name="plain")
                    .sink(MemorySink()), handle_signals=False)
    metrics = PipelineMetrics(runner)

    def restore_lines() -> list[str]:
        text = generate_latest(metrics.registry).decode()
        return [line for line in text.splitlines() if line.startswith("streamflow_state_restore")]

    labels = 'partition="{}",pipeline="bank",stage="accounts",state="balance"'
    assert restore_lines() == [
        f"streamflow_state_restore_remaining_records{{{labels.format(0)}}} 40.0",
        f"streamflow_state_restore_remaining_records{{{labels.format(1)}}} 0.0",
        f"streamflow_state_restored_records_total{{{labels.format(0)}}} 55.0",
        f"streamflow_state_restored_records_total{{{labels.format(1)}}} 0.0",
    ]  # the stage without state ("plain") has no samples

    finish(balance0)
    assert restore_lines() == [
        f"streamflow_state_restore_remaining_records{{{labels.format(0)}}} 0.0",
        f"streamflow_state_restore_remaining_records{{{labels.format(1)}}} 0.0",
        f"streamflow_state_restored_records_total{{{labels.format(0)}}} 95.0",
        f"streamflow_state_restored_records_total{{{labels.format(1)}}} 0.0",
    ]
