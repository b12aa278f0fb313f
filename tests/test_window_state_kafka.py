"""Windows and dedupe on the keyed state stores, against the real broker, run in-process.

With a Kafka input the open windows live in a store per input partition: the
inputs' offsets are committed while windows are open, late events go to the
`late` output, idle partitions let windows close, and a restart (same pipeline
and group) continues the open windows instead of starting them afresh.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from streamflow import Pipeline
from streamflow.connectors.kafka import KafkaSource
from streamflow.connectors.memory import MemorySink
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.core.stats import StageStats

pytestmark = pytest.mark.kafka

T0 = 1_700_000_040  # epoch seconds, a multiple of 60
LATENESS = 5
#: (key, seconds after T0) per input partition, in arrival order: out of order within the lateness.
EVENTS = {0: [("a", 1), ("a", 4), ("a", 12), ("a", 8), ("a", 3 + 10), ("a", 25), ("a", 22)],
          1: [("b", 2), ("b", 11), ("b", 9), ("b", 21), ("b", 19), ("b", 40)]}
CLOSER = 100  # an event on every partition this late closes every window above


def records(rows: Iterable[tuple[int, str, int]], id_start: int = 0) -> list[dict[str, Any]]:
    return [{"key": key, "partition": p, "value": {"id": id_start + i, "user": key, "ts": T0 + s}}
            for i, (p, key, s) in enumerate(rows)]


def arrival() -> list[tuple[int, str, int]]:
    return [(p, key, s) for p, rows in EVENTS.items() for key, s in rows]


# -- the windows each kind must give, computed directly from the events ---------------------
def tumbling(times: list[int], size: int = 10) -> list[tuple[float, float, list[int]]]:
    starts = sorted({t // size * size for t in times})
    return [(s, s + size, sorted(t for t in times if s <= t < s + size)) for s in starts]


def hopping(times: list[int], size: int = 10, step: int = 5) -> list[tuple[float, float, list[int]]]:
    starts = sorted({k * step for t in times for k in range(math.floor((t - size) / step) + 1, t // step + 1)})
    return [(s, s + size, sorted(t for t in times if s <= t < s + size)) for s in starts]


def sliding(times: list[int], size: int = 10) -> list[tuple[float, float, list[int]]]:
    return [(e - size, e, sorted(t for t in times if e - size < t <= e)) for e in sorted(set(times))]


def sessions(times: list[int], gap: int = 5) -> list[tuple[float, float, list[int]]]:
    out: list[list[int]] = []
    for t in sorted(times):
        if out and t - out[-1][-1] < gap:
            out[-1].append(t)
        else:
            out.append([t])
    return [(s[0], s[-1] + gap, s) for s in out]


KINDS: dict[str, tuple[dict[str, Any], Callable[[list[int]], list[tuple[float, float, list[int]]]]]] = {
    "tumbling": ({"kind": "tumbling", "size": 10}, tumbling),
    "hopping": ({"kind": "hopping", "size": 10, "step": 5}, hopping),
    "sliding": ({"kind": "sliding", "size": 10}, sliding),
    "session": ({"kind": "session", "gap": 5}, sessions),
}


def expected(model: Callable[[list[int]], list[tuple[float, float, list[int]]]]) -> list[tuple[Any, ...]]:
    out = []
    for rows in EVENTS.values():
        key = rows[0][0]
        for start, end, times in model([s for _, s in rows]):
            out.append((key, start, end, len(times), times))
    return sorted(out)


def results(values: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((v["key"], v["window_start"] - T0, v["window_end"] - T0, v["n"],
                   sorted(t - T0 for t in v["times"])) for v in values if v["key"] != "end")


def window_pipeline(kafka: Any, name: str, topic: str, sink: MemorySink, late: MemorySink | None = None,
                    **window: Any) -> Pipeline:
    source = KafkaSource(bootstrap_servers=kafka.bootstrap, topics=[topic], group_id=f"g-{name}",
                         batch_size=3)  # small batches: the watermark moves between them
    p = (Pipeline(name, commit_interval=0.2).source(source)
         .transform("window", name="win", key="user", time_field="ts", allowed_lateness=LATENESS,
                    aggregate={"n": "count", "times": {"collect": "ts"}},
                    **({"late": {"sink": "late"}} if late is not None else {}), **window)
         .sink(sink))
    return p.sink(late) if late is not None else p


async def run_while(pipeline: Pipeline, steps: Callable[[], Any]) -> Any:
    """Run ``pipeline`` in this loop while the coroutine ``steps()`` runs, then drain it (SIGTERM path)."""
    runner = Runner(pipeline, handle_signals=False)
    task = asyncio.create_task(runner.run())
    try:
        waited = asyncio.ensure_future(steps())
        done, _ = await asyncio.wait({task, waited}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            waited.cancel()
            raise AssertionError(f"pipeline ended early: {task.result().summary()}")
        waited.result()
    finally:
        runner.stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == EXIT_OK, result.summary()
    return result


def stats(result: Any, stage: str) -> StageStats:
    return next(s for s in result.stats if s.name == stage)


@pytest.mark.parametrize("kind", list(KINDS))
async def test_each_window_kind_exact_through_kafka_with_late_events_in_the_late_sink(kafka, kind):
    config, model = KINDS[kind]
    topic = await kafka.topic("win", partitions=2)
    name = f"win-{kind}-{uuid.uuid4().hex[:6]}"
    out, late = MemorySink(), MemorySink(name="late")
    rows = arrival()
    await kafka.produce(topic, records(rows))
    want = expected(model)

    async def steps() -> None:
        await kafka.produce(topic, records([(0, "end", CLOSER), (1, "end", CLOSER)], 100))
        await kafka.wait_for("every window", lambda: len(results(out.values)) >= len(want), timeout=60)
        # every input is committed although the closers' windows are still open
        await kafka.wait_for("offsets committed past open windows",
                             lambda: _committed(kafka, f"g-{name}", topic, len(rows) + 2))
        await kafka.produce(topic, records([(0, "a", 30), (1, "b", 50)], 200))  # behind the watermark (95)
        await kafka.wait_for("late events", lambda: len(late.values) == 2)

    result = await run_while(window_pipeline(kafka, name, topic, out, late, **config), steps)
    assert results(out.values) == want
    assert sorted((v["user"], v["ts"] - T0) for v in late.values) == [("a", 30), ("b", 50)]
    assert stats(result, "win").late == 2
    assert all(v["key"] != "end" for v in out.values)  # open at shutdown: kept in the store, not emitted


async def _committed(kafka: Any, group: str, topic: str, n: int) -> bool:
    return sum((await kafka.committed(group, topic)).values()) >= n


async def test_an_idle_partition_lets_windows_close(kafka):
    topic = await kafka.topic("idle", partitions=2)
    name = f"idle-{uuid.uuid4().hex[:6]}"
    out = MemorySink()
    await kafka.produce(topic, records([(1, "b", 2), (0, "a", 1), (0, "a", 5), (0, "a", 15), (0, "a", 31)]))

    async def steps() -> None:  # partition 1 stops at 2 s: only its idleness lets the windows close
        await kafka.wait_for("windows closed by idleness", lambda: len(out.values) >= 3, timeout=30)

    await run_while(window_pipeline(kafka, name, topic, out, idle_timeout=1, kind="tumbling", size=10), steps)
    assert results(out.values) == [("a", 0, 10, 2, [1, 5]), ("a", 10, 20, 1, [15]), ("b", 0, 10, 1, [2])]


async def test_open_windows_survive_a_restart_and_are_completed_after_it(kafka):
    topic = await kafka.topic("restart", partitions=2)
    name = f"restart-{uuid.uuid4().hex[:6]}"
    first, second = MemorySink(), MemorySink()
    rows = arrival()
    half = len(rows) // 2

    async def produce_half(part: list[tuple[int, str, int]], n: int, start: int) -> None:
        await kafka.produce(topic, records(part, start))
        await kafka.wait_for("inputs committed", lambda: _committed(kafka, f"g-{name}", topic, n))

    result = await run_while(window_pipeline(kafka, name, topic, first, kind="tumbling", size=10),
                             lambda: produce_half(rows[:half], half, 0))
    assert stats(result, "win").events_in == half

    async def rest() -> None:
        await kafka.produce(topic, records(rows[half:], half))
        await kafka.produce(topic, records([(0, "end", CLOSER), (1, "end", CLOSER)], 100))
        await kafka.wait_for("every window", lambda: len(results(first.values + second.values))
                             >= len(expected(tumbling)), timeout=60)

    await run_while(window_pipeline(kafka, name, topic, second, kind="tumbling", size=10), rest)
    assert results(first.values + second.values) == expected(tumbling)  # nothing lost, nothing twice


async def test_dedupe_keeps_deduplicating_across_a_restart(kafka):
    topic = await kafka.topic("dedupe", partitions=2)
    name = f"dedupe-{uuid.uuid4().hex[:6]}"
    sinks = [MemorySink(), MemorySink()]
    rounds = [[(0, "x", 1), (1, "y", 2), (0, "x", 3)], [(1, "y", 4), (0, "x", 5), (0, "z", 6)]]

    def pipeline(sink: MemorySink) -> Pipeline:
        source = KafkaSource(bootstrap_servers=kafka.bootstrap, topics=[topic], group_id=f"g-{name}")
        return Pipeline(name, commit_interval=0.2).source(source).dedupe(key="user").sink(sink)

    sent = 0
    for sink, rows in zip(sinks, rounds, strict=True):
        sent += len(rows)

        async def steps(rows: list[tuple[int, str, int]] = rows, n: int = sent) -> None:
            await kafka.produce(topic, records(rows, n * 10))
            await kafka.wait_for("inputs committed", lambda: _committed(kafka, f"g-{name}", topic, n))

        await run_while(pipeline(sink), steps)
    assert [sorted(v["user"] for v in s.values) for s in sinks] == [["x", "y"], ["z"]]
