"""Live progress on a terminal: a rich table of stages and channels, driven by runner stats."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from streamflow import Pipeline
from streamflow.core.runner import Runner
from streamflow.core.stats import StageStats
from streamflow.observability.progress import Rates, progress, render


def text_of(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_render_shows_stage_counters_and_channel_depths() -> None:
    stats = {"src": StageStats("src", "source", events_out=1200), "map": StageStats("map", "transform")}
    stats["map"].events_in, stats["map"].events_out, stats["map"].errors, stats["map"].dead_lettered = 1200, 1100, 7, 5
    channel = SimpleNamespace(name="src->map", depth=3, max_batches=8, events=300, max_events=20000)
    stages = [SimpleNamespace(name="src"), SimpleNamespace(name="map")]
    runner = SimpleNamespace(pipeline=SimpleNamespace(name="demo", stages=lambda: stages), state="running",
                             stats=dict(reversed(stats.items())), channels=[channel])
    out = text_of(render(runner, {"map": 2500.0}))
    assert "demo · running" in out
    assert out.index("src") < out.index("map")  # pipeline order, not the order stages opened
    map_row = next(line for line in out.splitlines() if "map" in line and "transform" in line)
    assert ["1,200", "1,100", "2,500", "7", "5"] == map_row.replace("│", " ").split()[2:]
    assert "src->map" in out and "3/8" in out and "300/20,000" in out


def test_rates_are_deltas_per_second() -> None:
    stats = {"a": StageStats("a", "source")}
    rates = Rates()
    stats["a"].events_out = 100
    first = rates.tick(stats)["a"]
    stats["a"].events_out = 100
    assert first > 0 and rates.tick(stats)["a"] == 0.0


async def test_progress_watcher_renders_until_the_run_ends() -> None:
    console = Console(file=io.StringIO(), width=160, force_terminal=True, color_system=None)
    pipeline = (Pipeline("live").source("memory", values=list(range(1000)), batch_size=100)
                .map(lambda v: v).sink("memory", delay=0.005))
    runner = Runner(pipeline, handle_signals=False,
                    watchers=[lambda r: progress(r, console=console, interval=0.01)])
    result = await runner.run()
    assert result.exit_code == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "live · stopped" in out  # the final frame, rendered when the runner cancels the watcher
    assert "sources->map" in out and "->memory" in out  # the one sink's channel, fed by map directly
    last_frame = out[out.rindex("live · stopped"):]
    assert last_frame.count("1,000") >= 2


def run_in_pty(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; returns the exit code and what it showed."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    proc = subprocess.Popen([sys.executable, "-m", "streamflow.cli", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_cli_shows_live_progress_only_on_a_terminal_and_not_quiet(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("name: tty\nsource: {type: memory, values: [1, 2, 3]}\nsink: {type: memory}\n")
    code, shown = run_in_pty(["run", str(cfg)], tmp_path)
    assert code == 0
    assert "channel" in shown and "dead-lettered" in shown and "completed: 3 in, 3 out" in shown
    code, shown = run_in_pty(["run", str(cfg), "--quiet"], tmp_path)
    assert code == 0 and "channel" not in shown and "completed" not in shown
    proc = subprocess.run([sys.executable, "-m", "streamflow.cli", "run", str(cfg)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "channel" not in proc.stderr and "completed: 3 in" in proc.stderr
