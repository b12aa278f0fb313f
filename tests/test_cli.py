"""The `streamflow` command: run, validate, graph, exit codes, --set, Python pipelines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import streamflow
from streamflow.cli import cli

FUNCTIONS = """
def double(x):
    return x * 2

def boom(x):
    if x == 3:
        raise ValueError("three is bad")
    return x
"""


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fns(tmp_path: Path):
    """A module of user functions beside the pipeline files, under a name unique to this test."""
    name = f"clifns_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FUNCTIONS)
    yield name
    sys.modules.pop(name, None)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def pos(path: Path, needle: str) -> str:
    """``LINE:COL`` (1-based) of the first occurrence of ``needle`` in ``path``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return f"{number}:{line.index(needle) + 1}"
    raise AssertionError(needle)


def pipeline_yaml(tmp_path: Path, fns: str, fn: str = "double", on_error: str = "fail") -> Path:
    return write(tmp_path / "demo.yaml", f"""
        name: demo
        source: {{type: memory, values: [1, 2, 3, 4, 5]}}
        stages:
          - {{type: map, fn: "{fns}:{fn}", on_error: {on_error}}}
        sinks:
          - {{type: memory}}
        """)


def streamflow_cmd(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (``python -m streamflow.cli``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "streamflow.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


# -- real subprocesses ---------------------------------------------------------
def test_run_yaml_pipeline_exits_0_with_summary(tmp_path: Path, fns: str) -> None:
    cfg = pipeline_yaml(tmp_path, fns)
    proc = streamflow_cmd("run", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "completed: 5 in, 5 out, 0 errors, 0 dead-lettered" in proc.stderr
    assert proc.stdout == ""


def test_run_failing_stage_exits_1(tmp_path: Path, fns: str) -> None:
    cfg = pipeline_yaml(tmp_path, fns, fn="boom", on_error="fail")
    proc = streamflow_cmd("run", str(cfg), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1
    assert "three is bad" in proc.stderr and "failed" in proc.stderr


def test_config_error_exits_2_printing_only_the_errors(tmp_path: Path, fns: str) -> None:
    cfg = write(tmp_path / "bad.yaml", f"""
        name: demo
        source: {{type: memory, values: [1]}}
        stages:
          - {{type: map, fn: "{fns}:double", concurency: 2}}
        sinks:
          - {{type: memory, dellay: 1}}
        """)
    for command in ("run", "validate", "graph"):
        proc = streamflow_cmd(command, str(cfg), cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.splitlines() == [
            f"{cfg}:{pos(cfg, 'concurency')}: stages[0].concurency — unknown key (did you mean 'concurrency'?)",
            f"{cfg}:{pos(cfg, 'dellay')}: sinks[0].dellay — unknown key (did you mean 'delay'?)",
        ]


def test_json_logs_are_one_object_per_line(tmp_path: Path, fns: str) -> None:
    cfg = pipeline_yaml(tmp_path, fns, fn="boom", on_error="skip")
    proc = streamflow_cmd("run", str(cfg), "--log-format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import orjson

    records = [orjson.loads(line) for line in proc.stderr.splitlines()]
    assert records, proc.stderr
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    skipped = [r for r in records if "skipped event" in r["message"]]
    assert len(skipped) == 1 and skipped[0]["level"] == "WARNING"
    summary = records[-1]
    assert summary["message"].startswith("completed: 5 in, 4 out, 1 errors")
    assert summary["events_in"] == 5 and summary["events_out"] == 4 and summary["exit_code"] == 0
    # the environment variable selects the same format
    proc = streamflow_cmd("run", str(cfg), cwd=tmp_path, env={"STREAMFLOW_LOG_FORMAT": "json"})
    assert [orjson.loads(line)["logger"] for line in proc.stderr.splitlines()][-1] == "streamflow.cli"


# -- in-process (CliRunner) -------------------------------------------------------
def test_validate_and_graph(tmp_path: Path, fns: str) -> None:
    cfg = pipeline_yaml(tmp_path, fns)
    result = CliRunner().invoke(cli, ["validate", str(cfg)])
    assert result.exit_code == 0 and result.stdout == "ok: demo (3 stages)\n"
    result = CliRunner().invoke(cli, ["graph", str(cfg)])
    assert result.exit_code == 0
    assert result.stdout == streamflow.load(cfg).graph()
    assert result.stdout.startswith("flowchart LR\n") and '["map"]' in result.stdout


def test_set_overrides_on_the_command_line(tmp_path: Path, fns: str) -> None:
    cfg = pipeline_yaml(tmp_path, fns)
    result = CliRunner().invoke(cli, ["run", str(cfg), "--set", "source.values=[1, 2]",
                                      "--set", "settings.shutdown_timeout=5"])
    assert result.exit_code == 0, result.stderr
    assert "completed: 2 in, 2 out" in result.stderr
    result = CliRunner().invoke(cli, ["validate", str(cfg), "--set", "source.nope.x=1"])
    assert result.exit_code == 2
    assert result.stderr == f"{cfg}: --set source.nope.x=1: source.nope.x — unknown path: source.nope is not in the file\n"


def test_quiet_prints_nothing_on_success(tmp_path: Path, fns: str) -> None:
    cfg = pipeline_yaml(tmp_path, fns)
    result = CliRunner().invoke(cli, ["run", str(cfg), "--quiet"])
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""


def test_run_python_pipeline_file(tmp_path: Path, fns: str) -> None:
    write(tmp_path / "flow.py", f"""
        from streamflow import Pipeline
        from {fns} import double

        def build():
            return Pipeline("py").source("memory", values=[1, 2, 3]).map(double).sink("memory")
        """)
    result = CliRunner().invoke(cli, ["run", f"{tmp_path / 'flow.py'}:build"])
    assert result.exit_code == 0, result.stderr
    assert "completed: 3 in, 3 out" in result.stderr
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "flow.py")])
    assert result.exit_code == 2 and "has no attribute 'pipeline'" in result.stderr


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"streamflow {streamflow.__version__}\n"


def wait_for(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if text in line:
            return
    raise AssertionError(f"never logged {text!r}: exit {proc.wait()}")


def start_long_run(tmp_path: Path, delay: float, *args: str) -> subprocess.Popen[str]:
    """A slow pipeline in a subprocess, returned once its runner is up (signal handlers installed)."""
    cfg = write(tmp_path / "long.yaml", f"""
        name: long
        source: {{type: memory, values: {list(range(5000))}, batch_size: 10}}
        sink: {{type: memory, delay: {delay}}}
        """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamflow.cli", "run", str(cfg), "--log-format", "json",
         *(args or ("--http-port", "0"))],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    wait_for(proc, "serving /metrics")  # the runner installs its signal handlers before starting watchers
    return proc


def test_sigterm_drains_and_exits_0_second_signal_exits_130(tmp_path: Path) -> None:
    import signal

    proc = start_long_run(tmp_path, delay=0.02)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, rest
    assert '"message":"stopped: ' in rest

    proc = start_long_run(tmp_path, delay=2.0)  # the drain would take many seconds
    proc.send_signal(signal.SIGINT)
    wait_for(proc, "received SIGINT")
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, rest
    assert "aborted by second SIGINT" in rest


def test_settings_http_starts_the_operations_server(tmp_path: Path) -> None:
    import signal

    proc = start_long_run(tmp_path, 0.02, "--set", "settings.http.port=0")  # waits for "serving /metrics"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
