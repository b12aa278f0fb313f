"""Open windows through kill -9, against the real broker: every window exact, no input lost or counted twice.

A `streamflow run` subprocess counts and sums events per user in tumbling
windows of 10 s from a three-partition topic; its input offsets are committed
while windows are open (their state is in the changelog). It is killed with
SIGKILL twice mid-stream and restarted; a last event on every partition then
closes every window. Every window written — a window may be written twice
after a crash, always with the same result — must equal the count and sum
computed directly from the input. Had a restart started its windows afresh
from the committed offsets, the windows open at a kill would come out short.
"""

from __future__ import annotations

import json
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.kafka

T0 = 1_700_000_040  # epoch seconds, a multiple of 10
USERS, PARTS, PER_SECOND = 60, 3, 30
SIZE = 10


def event(i: int) -> tuple[str, dict[str, Any], int]:
    """Input ``i``: (key, value, partition). Times never go back within a partition: nothing is late."""
    user = i % USERS
    return f"u{user}", {"id": i, "user": f"u{user}", "ts": T0 + i // PER_SECOND, "amount": i % 7}, user % PARTS


def write_pipeline(tmp_path: Path, name: str) -> Path:
    kafka = {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}"}
    window = {"type": "window", "name": "per-10s", "kind": "tumbling", "size": SIZE, "key": "user",
              "time_field": "ts", "allowed_lateness": 2, "state_backend": "disk",
              "aggregate": {"n": "count", "total": {"sum": "amount"}}}
    doc = {"name": name, "settings": {"commit_interval": 0.3, "shutdown_timeout": 30}, "stages": [window],
           "source": {**kafka, "topics": ["${IN_TOPIC}"], "group_id": "${GROUP}", "batch_size": 200,
                      "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                      "group_instance_id": f"{name}-1"},
           "sink": {**kafka, "topic": "${OUT_TOPIC}"}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


def expected(n: int) -> dict[tuple[str, int], tuple[int, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    totals: Counter[tuple[str, int]] = Counter()
    for i in range(n):
        _, value, _ = event(i)
        window = (value["user"], (value["ts"] - T0) // SIZE * SIZE)
        counts[window] += 1
        totals[window] += value["amount"]
    return {w: (counts[w], totals[w]) for w in counts}


async def test_kill_9_with_windows_open_gives_exact_windows_after_restart(kafka, pipeline_process, tmp_path):
    n = 30_000
    src, out = await kafka.topic("win-in", PARTS), await kafka.topic("win-out", PARTS)
    await kafka.produce(src, (event(i) for i in range(n)))
    want = expected(n)
    name = f"windows-{uuid.uuid4().hex[:8]}"
    proc = pipeline_process(write_pipeline(tmp_path, name), KAFKA_BOOTSTRAP=kafka.bootstrap,
                            IN_TOPIC=src, OUT_TOPIC=out, GROUP=f"g-{src}")
    for written in (len(want) // 5, len(want) // 2):
        await _kill_9_once_written(proc, kafka, out, written)
    proc.start()
    closers = [(f"end{p}", {"id": -1, "user": "end", "ts": T0 + 100_000, "amount": 0}, p) for p in range(PARTS)]
    await kafka.produce(src, closers)
    records = await kafka.consume(out, lambda r: len({_window(x) for x in r}) >= len(want), timeout=180,
                                  what="every window after 2 crashes")
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    written: dict[tuple[str, int], set[tuple[int, int]]] = {}
    for r in records:
        value = orjson.loads(r.value)
        written.setdefault(_window(r), set()).add((value["n"], value["total"]))
    print(f"\nwindows through kill -9 x2: {n} inputs, {len(want)} windows, {len(records) - len(want)} "
          "written twice", file=sys.stderr)
    assert all(len(results) == 1 for results in written.values())  # a window written twice is the same
    assert {w: next(iter(results)) for w, results in written.items()} == want
    assert sum((await kafka.committed(f"g-{src}", src)).values()) == n + PARTS


async def _kill_9_once_written(proc: Any, kafka: Any, topic: str, n: int) -> None:
    """Start ``proc``; SIGKILL it once ``topic`` holds ``n`` records (windows are open then)."""
    proc.start()
    await kafka.wait_for(f"{n} windows", lambda: _at_least(kafka, topic, n), timeout=120)
    assert proc.running, proc.tail()
    proc.kill()


def _window(record: Any) -> tuple[str, int]:
    value = orjson.loads(record.value)
    return value["key"], value["window_start"] - T0


async def _at_least(kafka: Any, topic: str, n: int) -> int:
    written = sum((await kafka.end_offsets(topic)).values())
    return written if written >= n else 0
