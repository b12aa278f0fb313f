"""`streamflow run --workers 2` against the real broker: two worker processes share a 3-partition topic.

The supervisor runs as a `streamflow run` subprocess (``STREAMFLOW_WORKERS=2``)
with its ops server on a free port; its ``/healthz`` names the workers' pids,
so a test can kill -9 one of them. Every test checks every input id in the
output topic; duplicates are allowed (at-least-once) and counted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.kafka

PARTS = 3


def write_pipeline(tmp_path: Path, *, rate: float | None = None, source: dict[str, Any] | None = None) -> Path:
    """kafka -> (rate_limit) -> kafka; the output's ``worker`` header says which worker wrote a record."""
    doc = {
        "name": "workers",
        "settings": {"commit_interval": 0.3, "shutdown_timeout": 30},
        "source": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topics": ["${IN_TOPIC}"],
                   "group_id": "${GROUP}", "batch_size": 200, "session_timeout_ms": 6000,
                   "heartbeat_interval_ms": 1000, **(source or {})},
        "stages": [{"type": "rate_limit", "rate": rate}] if rate else [],
        "sink": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topic": "${OUT_TOPIC}",
                 "headers": {"worker": "${STREAMFLOW_WORKER:-none}"}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


async def start(kafka: Any, pipeline_process: Any, path: Path, src: str, out: str) -> tuple[Any, int]:
    """The supervisor of 2 workers, started; and the port of its ops server (read from its log)."""
    proc = pipeline_process(path, "supervisor", KAFKA_BOOTSTRAP=kafka.bootstrap, IN_TOPIC=src, OUT_TOPIC=out,
                            GROUP=f"g-{src}", STREAMFLOW_WORKERS="2", STREAMFLOW_HTTP_PORT="0")
    proc.start()
    pattern = re.compile(r"serving /metrics \(summed over the workers\), /healthz, /readyz on http://127\.0\.0\.1:(\d+)")

    def port() -> int | None:
        found = pattern.search(proc.log.read_text(errors="replace"))
        return int(found.group(1)) if found else None

    return proc, await kafka.wait_for("the supervisor's ops server", port, timeout=30)


async def get(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


async def ready(port: int) -> bool:
    return (await get(port, "/readyz"))[0] == 200


def ids(records: list[Any]) -> Counter[int]:
    return Counter(orjson.loads(r.value)["id"] for r in records)


def by_worker(records: list[Any]) -> Counter[bytes]:
    return Counter(dict(r.headers)["worker"] for r in records)


def every_id(n: int) -> Any:
    return lambda records: len(records) >= n and len(ids(records)) >= n


async def metric_sum(port: int, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` (with ``labels``) in the supervisor's /metrics (parsed: valid text)."""
    status, text = await get(port, "/metrics")
    assert status == 200, text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def produce(kafka: Any, topic: str, n: int) -> None:
    await kafka.produce(topic, ((None, {"id": i, "p": i % PARTS}, i % PARTS) for i in range(n)))


async def flowing(kafka: Any, pipeline_process: Any, tmp_path: Path, hint: str, n: int,
                  rate: float) -> tuple[Any, int, str, str, Any]:
    """Two rate-limited workers ready, ``n`` inputs produced, both writing and 20% of it written:
    (supervisor, its port, input topic, output topic, a tail of the output)."""
    src, out = await kafka.topic(f"{hint}-in", PARTS), await kafka.topic(f"{hint}-out", PARTS)
    proc, port = await start(kafka, pipeline_process, write_pipeline(tmp_path, rate=rate), src, out)
    await kafka.wait_for("both workers ready", lambda: ready(port), timeout=90)
    await produce(kafka, src, n)
    output = await kafka.tail(out)
    try:
        await output.until(lambda r: len(by_worker(r)) == 2 and len(r) >= n // 5, 120, "output of both workers")
    except BaseException:
        await output.stop()
        raise
    return proc, port, src, out, output


async def test_a_killed_worker_is_restarted_and_nothing_is_lost(kafka, pipeline_process, tmp_path):
    n = 40_000
    proc, port, _, _, output = await flowing(kafka, pipeline_process, tmp_path, "wk", n, rate=2500)
    try:
        victim = (await get(port, "/healthz"))[1]["workers"]["0"]["pid"]
        os.kill(victim, signal.SIGKILL)
        written_at_kill = len(output.records)
        assert written_at_kill < n, "the run finished before the kill; the test proves nothing"

        async def restarted() -> bool:
            worker = (await get(port, "/healthz"))[1]["workers"]["0"]
            return worker["restarts"] == 1 and worker["pid"] not in (None, victim)

        await kafka.wait_for("the supervisor to restart worker 0", restarted, timeout=60)
        records = await output.until(every_id(n), 180, "every id after the kill")
    finally:
        await output.stop()
    assert await metric_sum(port, "streamflow_worker_restarts_total", worker="0") == 1
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    assert set(ids(records)) == set(range(n)) and set(by_worker(records)) == {b"0", b"1"}
    print(f"\n--workers 2, worker 0 kill -9ed at {written_at_kill} written: {n} inputs, {len(records)} written, "
          f"{len(records) - n} duplicates, by worker {dict(by_worker(records))}", file=sys.stderr)


async def test_metrics_sum_the_workers_and_sigterm_commits_everything(kafka, pipeline_process, tmp_path):
    n = 6000
    src, out = await kafka.topic("wm-in", PARTS), await kafka.topic("wm-out", PARTS)
    # static membership: each worker gets its own id (gi-0, gi-1), or the broker would fence one of them
    path = write_pipeline(tmp_path, source={"group_instance_id": f"gi-{src}"})
    proc, port = await start(kafka, pipeline_process, path, src, out)
    await kafka.wait_for("both workers ready", lambda: ready(port), timeout=90)
    await produce(kafka, src, n)  # after both joined: each owns partitions
    records = await kafka.consume(out, every_id(n), timeout=90, what="every id")
    assert len(records) == n and set(by_worker(records)) == {b"0", b"1"}

    async def events_read() -> float:
        return await metric_sum(port, "streamflow_events_out_total", kind="source")

    await kafka.wait_for(f"/metrics: {n} events read in all", lambda: _equals(events_read(), n), timeout=30)
    assert await metric_sum(port, "streamflow_events_out_total", kind="sink") == n
    assert await metric_sum(port, "streamflow_worker_up") == 2
    for worker in ("0", "1"):  # gauges are per worker
        assert await metric_sum(port, "streamflow_ready", worker=worker) == 1
    _, text = await get(port, "/metrics")
    assert not re.search(r'^streamflow_events_in_total\{[^}]*worker=', text, re.M), "counters are summed"

    assert await metric_sum(port, "streamflow_worker_restarts_total") == 0  # neither member was fenced

    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()
    assert await kafka.committed(f"g-{src}", src) == await kafka.end_offsets(src)
    assert _stopped(proc.log.read_text()), proc.tail()


async def _equals(value: Any, expected: float) -> bool:
    return await value == expected


def _stopped(log: str) -> bool:
    """Both workers' runners stopped on the signal (their summaries say so)."""
    return all(re.search(rf"worker {i}: stopped", log) for i in range(2))


async def test_sigterm_mid_stream_drains_every_worker(kafka, pipeline_process, tmp_path):
    n = 20_000
    proc, _, src, out, output = await flowing(kafka, pipeline_process, tmp_path, "wt", n, rate=1500)
    await output.stop()
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    written = sum((await kafka.end_offsets(out)).values())
    assert written < n, "the run finished before the signal; the test proves nothing"
    first = await kafka.consume(out, lambda r: len(r) >= written)
    assert len(ids(first)) == len(first), "duplicates without a crash"
    per_partition = Counter(orjson.loads(r.value)["p"] for r in first)
    # each worker drained and committed exactly what it had written, for the partitions it owned
    assert await kafka.committed(f"g-{src}", src) == {p: c for p, c in per_partition.items() if c}
    assert _stopped(proc.log.read_text()), proc.tail()
