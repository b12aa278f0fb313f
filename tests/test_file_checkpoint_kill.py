"""kill -9 mid-stream and restart: a file pipeline with a checkpoint loses nothing (contract 2)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

N = 20_000

SCRIPT = """
import asyncio
import sys

from streamflow import Pipeline
from streamflow.connectors.files_sink import FileSink
from streamflow.connectors.files_source import FileSource


async def slow(record):  # the source runs ahead of it by the channel capacities
    await asyncio.sleep(0.001)
    return {"id": record["id"], "seen": True}


src, out, cp = sys.argv[1:4]
result = (Pipeline("kill-test", commit_interval=0.05)
          .source(FileSource(path=src, checkpoint=cp, batch_size=100))
          .map(slow, concurrency=4)
          .sink(FileSink(path=out))
          .run(handle_signals=False))
sys.exit(result.exit_code)
"""


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_kill_9_and_restart_loses_nothing(tmp_path: Path) -> None:
    script, src, out, cp = (tmp_path / "pipeline.py", tmp_path / "in.jsonl", tmp_path / "out.jsonl",
                            tmp_path / "cp.json")
    script.write_text(SCRIPT)
    src.write_bytes(b"".join(orjson.dumps({"id": i, "pad": "x" * 40}) + b"\n" for i in range(N)))
    kills, runs, resumed_at = 0, 0, []
    while True:
        runs += 1
        assert runs <= 20, "the pipeline never completed"
        before = count_lines(out)
        if cp.exists():
            resumed_at.append(orjson.loads(cp.read_bytes())["line"])
        proc = subprocess.Popen([sys.executable, str(script), str(src), str(out), str(cp)],
                                stderr=subprocess.PIPE)
        if kills < 3:
            # wait (bounded) until this run has written some lines, then kill it mid-stream
            for _ in range(6000):
                if proc.poll() is not None or count_lines(out) >= before + 1500:
                    break
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                proc.stderr.close()
                kills += 1
                continue
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        break

    ids: list[int] = []
    torn = 0
    for line in out.read_bytes().splitlines():
        try:
            ids.append(orjson.loads(line)["id"])
        except orjson.JSONDecodeError:
            torn += 1  # a write cut by kill -9; its batch was not acknowledged, so it is replayed
    missing = set(range(N)) - set(ids)
    duplicates = len(ids) - len(set(ids))
    print(f"\nkill -9: {kills} kills, {runs} runs, resumed at lines {resumed_at}, "
          f"{len(ids)} output records, {duplicates} duplicates, {torn} torn lines")
    assert kills >= 1, "the pipeline finished before it could be killed"
    assert not missing, f"{len(missing)} ids lost, e.g. {sorted(missing)[:10]}"
    assert orjson.loads(cp.read_bytes())["line"] == N
    # restarts resumed from the checkpoint instead of from the start
    assert any(line > 0 for line in resumed_at)
    assert duplicates < kills * N
