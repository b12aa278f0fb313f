"""pipelines/clicks_per_minute.yaml and pipelines/sessions.yaml, run with the `streamflow` CLI against a real broker.

The clicks go to a one-partition topic in two rounds: the first moves the
watermark past the first windows (they come out while the pipeline runs), the
second is a click behind it (dead-lettered). SIGTERM then commits every click
while windows are still open: they stay in the state store. After a restart
they come back from the changelog, and a click much later closes them.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_040_000  # epoch ms at the start of a minute

pytestmark = pytest.mark.kafka

FIRST = [("ann", "/home", 0), ("bob", "/home", 10), ("ann", "/cart", 20), ("ann", "/home", 45),
         ("bob", "/docs", 125)]  # bob at 2:05: the watermark (2:00) passes minute 1 and ann's session
LATE = [("ann", "/pay", 55)]      # minute 1 and ann's session are written by then
CLOSE = [("carl", "/home", 600)]  # after the restart: closes every window still open


def clicks(rows: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    return [{"key": u, "partition": 0, "value": {"user": u, "page": p, "ts": T0 + s * 1000}} for u, p, s in rows]


async def run_example(kafka: Any, pipeline_process: Any, example: str, env_out: str, first: int) -> tuple[
        list[dict[str, Any]], Any]:
    """Run ``example`` over FIRST then LATE; its outputs (the first ``first`` before SIGTERM) and dead letter."""
    source, out, dead = (await kafka.topic("clicks", partitions=1), await kafka.topic("out"),
                         await kafka.topic("dlq"))
    await kafka.produce(source, clicks(FIRST))
    proc = pipeline_process(ROOT / f"pipelines/{example}.yaml", cwd=ROOT, KAFKA_BOOTSTRAP=kafka.bootstrap,
                            CLICKS_TOPIC=source, DEAD_LETTER_TOPIC=dead, GROUP_ID=f"g-{source}",
                            **{env_out: out}).start()
    await kafka.consume(out, lambda r: len(r) >= first, what="windows the watermark closed")
    await kafka.produce(source, clicks(LATE))
    [dlq] = await kafka.consume(dead, lambda r: len(r) >= 1, what="the late click")
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()
    assert sum((await kafka.committed(f"g-{source}", source)).values()) == len(FIRST) + len(LATE)
    assert sum((await kafka.end_offsets(out)).values()) == first  # the open windows are kept, not written
    proc.start()
    await kafka.produce(source, clicks(CLOSE))
    records = await kafka.consume(out, lambda r: len(r) > first, what="windows restored and closed")
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()
    assert all(r.key == orjson.loads(r.value)["key"].encode() for r in records)  # key_field: key
    assert dlq.value == orjson.dumps(clicks(LATE)[0]["value"])
    assert b"LateEvent" in dict(dlq.headers)["streamflow.error"]
    return [orjson.loads(r.value) for r in records], dlq


async def test_clicks_per_minute(kafka, pipeline_process):
    counts, dlq = await run_example(kafka, pipeline_process, "clicks_per_minute", "COUNTS_TOPIC", first=2)
    start = T0 // 1000
    assert sorted((c["key"], c["window_start"] - start, c["clicks"], c["pages"]) for c in counts) == [
        ("ann", 0, 3, 2), ("bob", 0, 1, 1), ("bob", 120, 1, 1)]
    assert dict(dlq.headers)["streamflow.stage"] == b"per-minute"


async def test_sessions(kafka, pipeline_process):
    sessions, dlq = await run_example(kafka, pipeline_process, "sessions", "SESSIONS_TOPIC", first=2)
    start = T0 // 1000
    assert sorted((s["key"], s["window_start"] - start, s["clicks"], s["first_page"], s["last_page"],
                   s["duration_s"]) for s in sessions) == [
        ("ann", 0, 3, "/home", "/home", 45.0), ("bob", 10, 1, "/home", "/home", 0.0),
        ("bob", 125, 1, "/docs", "/docs", 0.0)]  # bob's clicks are 115 s apart: two sessions
    assert dict(dlq.headers)["streamflow.stage"] == b"sessions"
