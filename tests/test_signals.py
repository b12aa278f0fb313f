"""Contract 4: SIGTERM drains and commits everything read; a second signal aborts at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

SCRIPT = textwrap.dedent('''
    import asyncio, json, sys
    from streamflow import Pipeline
    from streamflow.core.batch import Batch
    from streamflow.core.message import Message
    from streamflow.core.stage import Sink, Source

    STUCK = sys.argv[1] == "stuck"

    class Counter(Source):
        """An endless source of consecutive integers."""
        def __init__(self):
            super().__init__()
            self.next = 0
            self.committed = None
        async def read(self):
            await asyncio.sleep(0)
            start, self.next = self.next, self.next + 50
            return Batch([Message(i, offset=i) for i in range(start, self.next)],
                         [self.tracker.track(0, self.next)])
        async def checkpoint(self, positions):
            self.committed = positions[0]

    class Slow(Sink):
        def __init__(self):
            super().__init__()
            self.values = []
        async def write(self, batch):
            await asyncio.sleep(3600 if STUCK and self.values else 0.002)
            self.values.extend(m.value for m in batch.messages)
            print("written", len(self.values), flush=True)

    src, sink = Counter(), Slow()
    result = Pipeline("sig", shutdown_timeout=20).source(src).map(lambda v: v).sink(sink).run()
    print(json.dumps({"reason": result.reason, "read": src.next, "written": sink.values,
                      "committed": src.committed}), flush=True)
    sys.exit(result.exit_code)
''')


def start(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "pipeline_script.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_writes(proc: subprocess.Popen[str], n: int) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("written") and int(line.split()[1]) >= n:
            return
    raise AssertionError(f"process ended before writing {n} events: {proc.stderr.read() if proc.stderr else ''}")


def final_report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, err
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def test_sigterm_mid_stream_writes_and_commits_everything_read(tmp_path: Path) -> None:
    proc = start(tmp_path, "normal")
    wait_for_writes(proc, 500)
    proc.send_signal(signal.SIGTERM)
    report = final_report(proc)
    assert proc.returncode == 0, report
    assert report["reason"] == "stopped"
    written = report["written"]
    assert written == list(range(len(written)))       # nothing lost, nothing reordered
    assert report["committed"] == len(written)        # checkpoint = everything written
    assert report["read"] - len(written) in (0, 50)   # at most the batch being read when stopped


def test_second_signal_aborts_without_committing_unwritten(tmp_path: Path) -> None:
    proc = start(tmp_path, "stuck")
    wait_for_writes(proc, 50)  # the sink is now stuck in its second write
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    report = final_report(proc)
    assert proc.returncode == 130
    assert report["reason"].startswith("aborted by second")
    assert report["committed"] == 50 == len(report["written"])
