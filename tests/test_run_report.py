"""How a run reports itself: one message for a failure, events/s over the time events flowed."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path
from typing import Any

from test_cli import streamflow_cmd

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.result import EXIT_FAILED, EXIT_OK


def _failing(tmp_path: Path) -> Path:
    (tmp_path / "failmod.py").write_text("def boom(value):\n    raise ValueError('bad value')\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(textwrap.dedent("""
        name: failing
        source: {type: generator, count: 10, format: object}
        stages:
          - {type: map, fn: "failmod:boom"}
        sink: {type: stdout}
        """))
    return cfg


def test_a_failure_is_reported_once_then_the_counts(tmp_path: Path) -> None:
    r = streamflow_cmd("run", str(_failing(tmp_path)), cwd=tmp_path)
    assert r.returncode == EXIT_FAILED
    assert r.stderr.count("ValueError: bad value") == 1, r.stderr
    assert "stage 'map' failed on event at generator[0]@0" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("failed: 10 in, 0 out, 1 errors")


def test_a_json_failure_log_carries_the_position(tmp_path: Path) -> None:
    r = streamflow_cmd("run", str(_failing(tmp_path)), "--log-format", "json", cwd=tmp_path)
    records = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    failed = [rec for rec in records if "bad value" in rec["message"]]
    assert len(failed) == 1
    assert failed[0]["stage"] == "map" and failed[0]["offset"] == 0 and failed[0]["pipeline"] == "failing"


class _LateStart(MemorySource):
    """Waits before its first batch, like a consumer on a topic that is empty at first."""

    woke_at = 0.0

    async def read(self) -> Any:
        if self._pos == 0:
            await asyncio.sleep(0.3)
            self.woke_at = time.monotonic()
        return await super().read()


def test_events_per_second_leave_out_the_time_before_the_first_event() -> None:
    out, src = MemorySink(), _LateStart(values=list(range(100)), batch_size=10)
    result = Pipeline("p").source(src).sink(out).run(handle_signals=False)
    assert result.exit_code == EXIT_OK and out.values == list(range(100))
    source, sink = result.stats[0], result.stats[-1]
    assert result.active_seconds == sink.last_event_at - source.first_event_at > 0
    assert source.first_event_at >= src.woke_at > 0  # the span starts after the wait, not before it
    assert "events/s over the" in result.summary()


def test_a_run_without_events_shows_no_rate() -> None:
    result = Pipeline("p").source(MemorySource(values=[])).sink(MemorySink()).run(handle_signals=False)
    assert result.active_seconds == 0.0 and "events/s" not in result.summary()
