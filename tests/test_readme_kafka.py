"""The README's Kafka path, run as written: dev broker -> run kafka_enrich.yaml -> produce -> tap.

The commands are read from the README (between the ``kafka-path`` markers), so
the two cannot drift. The only change is ``--port``: the dev broker gets a free
port instead of 9092, and the other commands reach it through the documented
``KAFKA_BOOTSTRAP``. With ``STREAMFLOW_TEST_BOOTSTRAP`` they use that broker.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streamflow.dev.kafka import free_port

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ".venv/bin/streamflow"

pytestmark = pytest.mark.kafka


def readme_commands() -> list[list[str]]:
    """Every command of the README's Kafka path, in order, split like a shell would."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- kafka-path:start -->\n```sh\n(.*?)```\n<!-- kafka-path:end -->", text, re.S)
    assert block, "README.md lost its kafka-path block"
    lines = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    commands = [shlex.split(ln, comments=True) for ln in lines]
    assert all(c[0] == PROGRAM for c in commands), commands
    return commands


def test_the_readme_path_is_dev_kafka_run_produce_tap() -> None:
    assert [c[1] for c in readme_commands()] == ["dev", "run", "produce", "tap", "tap"]


def _argv(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "streamflow.cli", *command[1:]]


def _stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        raise AssertionError(f"{proc.args} did not stop within {timeout}s on SIGTERM") from None


def _start_dev_kafka(command: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The README's `dev kafka` on a free port; waits (bounded) for the address it prints."""
    proc = subprocess.Popen([*_argv(command), "--port", str(free_port())], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=open(log, "wb"))  # noqa: SIM115 - closed with the process
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline, out = time.monotonic() + 180, b""
    while b"\n" not in out:
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise AssertionError(f"dev kafka printed no address:\n{log.read_text()}")
        out += proc.stdout.read() or b""
        time.sleep(0.1)
    return proc, out.decode().splitlines()[0].strip()


def test_readme_kafka_path(tmp_path: Path) -> None:
    dev, run, produce, tap_enriched, tap_dead = readme_commands()
    started = time.monotonic()
    broker: subprocess.Popen[bytes] | None = None
    bootstrap = os.environ.get("STREAMFLOW_TEST_BOOTSTRAP")
    if not bootstrap:
        broker, bootstrap = _start_dev_kafka(dev, tmp_path / "dev-kafka.log")
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "run.log"
    pipeline = subprocess.Popen(_argv(run), cwd=ROOT, env=env, stdout=open(log, "wb"),  # noqa: SIM115
                                stderr=subprocess.STDOUT)
    try:
        sent = subprocess.run(_argv(produce), cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert sent.returncode == 0, sent.stderr.decode()
        assert b"sent 1000 events to orders" in sent.stderr
        enriched = subprocess.run(_argv(tap_enriched), cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert enriched.returncode == 0, enriched.stderr.decode() + log.read_text()
        lines = enriched.stdout.decode().splitlines()
        assert len(lines) == 5 and all(ln.startswith("orders-enriched[") for ln in lines), lines
        for line in lines:
            value = orjson.loads(line.split("  ")[-1])
            assert value["type"] == "order" and value["name"] and value["total"] > 0
            assert "headers=pipeline=kafka-enrich" in line and f"key={value['customer']}" in line
        print(f"\nREADME Kafka path: enriched events seen {time.monotonic() - started:.1f}s after "
              "`dev kafka` started", file=sys.stderr)
        dead = subprocess.run(_argv(tap_dead), cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert dead.returncode == 0, dead.stderr.decode()
        out = dead.stdout.decode()
        assert "unknown product 'p9'" in out and "streamflow.stage=price" in out, out
        assert _stop(pipeline) == 0, log.read_text()
    finally:
        _stop(pipeline)
        if broker is not None:
            assert _stop(broker) == 0, (tmp_path / "dev-kafka.log").read_text()
    assert "Task exception was never retrieved" not in log.read_text()
