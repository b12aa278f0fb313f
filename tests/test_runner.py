"""The engine end to end with in-memory stages: policies, routing, order, failures, commits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.batch import Batch
from streamflow.core.errors import ConfigError
from streamflow.core.runner import EXIT_FAILED, EXIT_OK, Runner, RunResult
from streamflow.core.stage import ComponentConfig, Sink


def run(p: Pipeline) -> RunResult:
    return p.run(handle_signals=False)


def boom_on(bad: set[int]) -> Callable[[int], int]:
    def fn(v: int) -> int:
        if v in bad:
            raise ValueError(f"bad value {v}")
        return v * 10
    return fn


def test_map_filter_fan_out_and_commit() -> None:
    src = MemorySource(values=list(range(1000)), partitions=3, batch_size=7)
    a, b = MemorySink(name="a"), MemorySink(name="b")
    r = run(Pipeline("t").source(src).filter(lambda v: v % 2 == 0).map(lambda v: v + 1).sink(a).sink(b))
    assert r.exit_code == EXIT_OK and r.reason == "completed"
    expected = [v + 1 for v in range(1000) if v % 2 == 0]
    assert sorted(a.values) == expected and sorted(b.values) == expected
    assert src.committed == {0: 1000, 1: 998, 2: 999}  # last offset + 1 of each partition
    assert src.tracker.pending() == 0


def test_route_by_predicate_and_unrouted_events_are_acked() -> None:
    src = MemorySource(values=list(range(100)))
    small, big = MemorySink(name="small"), MemorySink(name="big")
    p = (Pipeline("t").source(src)
         .sink(small, when=lambda v: v < 10)
         .sink(big, when=lambda v: v >= 90))
    r = run(p)
    assert r.exit_code == EXIT_OK
    assert small.values == list(range(10)) and big.values == list(range(90, 100))
    assert src.committed == {0: 100}


def test_skip_policy_drops_counts_and_logs_the_position(caplog: pytest.LogCaptureFixture) -> None:
    src = MemorySource(values=list(range(20)))
    out = MemorySink()
    r = run(Pipeline("t").source(src).map(boom_on({3, 7}), on_error="skip", name="x10").sink(out))
    assert r.exit_code == EXIT_OK
    assert out.values == [v * 10 for v in range(20) if v not in (3, 7)]
    assert r.errors == 2 and src.committed == {0: 20}
    skipped = [rec for rec in caplog.records if "skipped event" in rec.getMessage()]
    assert [(rec.__dict__["stage"], rec.__dict__["offset"], rec.__dict__["pipeline"]) for rec in skipped] == [("x10", 3, "t"), ("x10", 7, "t")]


def test_dead_letter_policy_keeps_payload_error_and_position() -> None:
    src = MemorySource(values=list(range(20)), batch_size=5)
    out, dlq = MemorySink(name="out"), MemorySink(name="dlq")
    p = (Pipeline("t").source(src).map(boom_on({4}), on_error="dead_letter", name="times_ten")
         .sink(out).dead_letter(dlq))
    r = run(p)
    assert r.exit_code == EXIT_OK and r.dead_lettered == 1
    [record] = dlq.values
    assert record["stage"] == "times_ten"
    assert record["error"] == "ValueError: bad value 4"
    assert record["payload"] == 4
    assert record["source"] == {"topic": "memory", "partition": 0, "offset": 4}
    headers = dict(dlq.messages[0].headers or [])
    assert headers["streamflow.stage"] == b"times_ten" and headers["streamflow.source.offset"] == b"4"
    assert src.committed == {0: 20}


def test_retry_policy_recovers_then_falls_back() -> None:
    calls: dict[int, int] = {}

    def flaky(v: int) -> int:
        calls[v] = calls.get(v, 0) + 1
        if v == 1 and calls[v] < 3:
            raise ConnectionError("transient")
        if v == 2:
            raise ValueError("permanent")
        return v

    src = MemorySource(values=[0, 1, 2, 3])
    out, dlq = MemorySink(name="out"), MemorySink(name="dlq")
    policy = {"policy": "retry", "max_attempts": 4, "backoff": 0.001, "then": "dead_letter"}
    r = run(Pipeline("t").source(src).map(flaky, on_error=policy).sink(out).dead_letter(dlq))
    assert r.exit_code == EXIT_OK
    assert out.values == [0, 1, 3]
    assert calls[1] == 3 and calls[2] == 4
    assert [m.value["attempts"] for m in dlq.messages] == [4]


def test_fail_policy_stops_and_does_not_commit_the_failing_offset() -> None:
    src = MemorySource(values=list(range(100)), batch_size=10)
    out = MemorySink()
    r = run(Pipeline("t").source(src).map(boom_on({55})).sink(out))
    assert r.exit_code == EXIT_FAILED
    assert "bad value 55" in r.reason
    assert src.committed.get(0, 0) <= 50  # the batch holding offset 55 is never committed


def test_crashing_sink_with_limited_retries_fails_cleanly() -> None:
    class Broken(Sink[ComponentConfig]):
        async def write(self, batch: Batch) -> None:
            raise OSError("disk on fire")

    src = MemorySource(values=list(range(10)))
    r = run(Pipeline("t", sink_retry={"max_attempts": 2, "backoff": 0.001})
            .source(src).sink(Broken()))
    assert r.exit_code == EXIT_FAILED and "disk on fire" in r.reason
    assert src.committed == {}


def test_sink_outage_is_retried_and_nothing_is_lost() -> None:
    class Flaky(MemorySink):
        failures = 3

        async def write(self, batch: Batch) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("down")
            await super().write(batch)

    src = MemorySource(values=list(range(50)), batch_size=10)
    out = Flaky()
    r = run(Pipeline("t", sink_retry={"backoff": 0.001}).source(src).sink(out))
    assert r.exit_code == EXIT_OK and out.values == list(range(50))
    assert r.stats[-1].retries == 3


@pytest.mark.parametrize("ordered", [True, False])
def test_async_concurrency_keeps_order_when_asked(ordered: bool) -> None:
    rng = random.Random(7)
    delays = {v: rng.random() / 500 for v in range(600)}

    async def slow(v: int) -> int:
        await asyncio.sleep(delays[v])
        return v

    src = MemorySource(values=list(range(600)), batch_size=20)
    out = MemorySink()
    r = run(Pipeline("t").source(src).map(slow, concurrency=16, ordered=ordered).sink(out))
    assert r.exit_code == EXIT_OK
    assert sorted(out.values) == list(range(600))
    if ordered:
        assert out.values == list(range(600))
    assert src.committed == {0: 600}


def test_unordered_commit_never_passes_an_unfinished_event() -> None:
    """A slow first batch and fast later ones: the watermark stays behind the slow one."""
    release = asyncio.Event()
    seen: list[int | None] = []
    src = MemorySource(values=list(range(100)), batch_size=10)

    async def fn(v: int) -> int:
        if v == 0:
            await release.wait()
        return v

    class Recorder(MemorySink):
        async def write(self, batch: Batch) -> None:
            await super().write(batch)
            seen.append(src.tracker.watermark(0))
            if len(self.messages) >= 90:
                release.set()

    out = Recorder()
    r = run(Pipeline("t").source(src).map(fn, concurrency=4, ordered=False).sink(out))
    assert r.exit_code == EXIT_OK
    assert out.values[-10:] == list(range(10))  # the slow batch finished last
    assert all(w is None for w in seen[:-1])    # nothing committable before it
    assert src.committed == {0: 100}


def test_dead_letter_without_sink_is_a_config_error() -> None:
    p = Pipeline("t").source(MemorySource(values=[1])).map(lambda v: v, on_error="dead_letter") \
        .sink(MemorySink())
    with pytest.raises(ConfigError, match="no dead_letter sink"):
        p.validate()


def test_pipeline_needs_source_and_sink() -> None:
    with pytest.raises(ConfigError, match="no source"):
        Pipeline("t").sink(MemorySink()).validate()
    with pytest.raises(ConfigError, match="no sink"):
        Pipeline("t").source(MemorySource(values=[])).validate()


async def test_stop_drains_and_commits_everything_read() -> None:
    src = MemorySource(values=list(range(10**6)), batch_size=100)
    out = MemorySink(delay=0.001)
    runner = Runner(Pipeline("t").source(src).sink(out), handle_signals=False)
    task = asyncio.create_task(runner.run())
    while len(out.messages) < 1000:
        await asyncio.sleep(0.005)
    runner.stop()
    r = await task
    assert r.exit_code == EXIT_OK and r.reason == "stopped"
    assert 1000 <= len(out.messages) < 10**6
    assert out.values == list(range(len(out.messages)))
    assert src.committed == {0: len(out.messages)}
    assert r.events_in == len(out.messages)


async def test_drain_timeout_aborts() -> None:
    class Stuck(Sink[ComponentConfig]):
        async def write(self, batch: Batch) -> None:
            await asyncio.sleep(3600)

    src = MemorySource(values=list(range(1000)))
    runner = Runner(Pipeline("t", shutdown_timeout=0.2).source(src).sink(Stuck()), handle_signals=False)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.05)
    runner.stop()
    r = await asyncio.wait_for(task, 10)
    assert r.exit_code == EXIT_FAILED and r.reason == "drain timed out"
    assert src.committed == {}


async def ident(value: Any) -> Any:
    return value


def test_graph_shows_stages_queues_routes_and_dead_letter() -> None:
    p = (Pipeline("g", channel={"max_batches": 3, "max_events": 99})
         .source(MemorySource(values=[]))
         .map(ident, on_error="dead_letter", concurrency=4, name="m")
         .sink(MemorySink(name="all"))
         .sink(MemorySink(name="some"), when=lambda v: True)
         .dead_letter(MemorySink(name="dlq")))
    text = p.graph()
    assert text.startswith("flowchart LR\n")
    assert '(["memory"])' in text and '["m (map) ×4 · on_error dead_letter"]' in text
    assert "s0 -->|queue 3 batches / 99 events| t1" in text
    assert '[("all (memory)")]' in text and "route -->|when <lambda>| k3" in text
    assert '[("dead letter: dlq (memory)")]' in text and "t1 -.->|on_error| d4" in text
    assert "|queue 1 batch / 20000 events|" in Pipeline("d").source(MemorySource(values=[])).sink(MemorySink()).graph()
