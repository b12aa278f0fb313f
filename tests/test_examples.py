"""The example pipelines in pipelines/ run as the README says, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = 20_000


def streamflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEMO_EVENTS": str(EVENTS)}
    return subprocess.run([sys.executable, "-m", "streamflow.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of pipelines/ (with its data and functions) to run the examples in."""
    subprocess.run(["cp", "-r", str(ROOT / "pipelines"), str(tmp_path / "pipelines")], check=True)
    return tmp_path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("target", ["pipelines/demo.yaml", "pipelines/demo.py"])
def test_demo_writes_enriched_purchases_and_dead_letters(workdir: Path, target: str) -> None:
    r = streamflow("run", target, cwd=workdir)
    assert r.returncode == 0, r.stderr
    out = records(workdir / "out/demo.jsonl")
    dead = records(workdir / "out/demo-dead-letter.jsonl")
    assert out and all(e["type"] == "purchase" for e in out)
    products = {"p1", "p2", "p3", "p4", "p5"}
    assert all(e["product_id"] in products and e["name"] and e["category"] for e in out)
    assert all(e["total"] == round(float(e["price"]) * e["quantity"], 2) for e in out)
    # every 5000th generated event is malformed JSON: dead-lettered with its position
    assert [d["source"]["offset"] for d in dead] == list(range(4999, EVENTS, 5000))
    assert all(d["stage"] == "parse" and "JSONDecodeError" in d["error"] for d in dead)
    ids = [e["id"] for e in out]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert f"completed: {EVENTS} in, {len(out)} out" in r.stderr


def test_yaml_and_python_demo_are_the_same_graph(workdir: Path) -> None:
    a = streamflow("graph", "pipelines/demo.yaml", cwd=workdir)
    b = streamflow("graph", "pipelines/demo.py", cwd=workdir)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and "enrich" in a.stdout


@pytest.mark.parametrize("policy, code", [("fail", 1), ("skip", 0), ("dead_letter", 0), ("retry", 0)])
def test_error_policy_examples(workdir: Path, policy: str, code: int) -> None:
    r = streamflow("run", f"pipelines/errors/{policy}.yaml", "--quiet", cwd=workdir)
    assert r.returncode == code, r.stderr
    out = workdir / f"out/errors-{policy}.jsonl"
    written = records(out) if out.exists() else []
    if policy == "fail":
        assert "needs manual review" in r.stderr
        assert all(e["quantity"] < 9 for e in written)
    elif policy == "skip":
        assert written and all(e["quantity"] < 9 for e in written)
        # the first few skips are logged one by one, the rest counted in a summary line
        one_by_one = r.stderr.count("review: skipped event at")
        summarized = sum(int(n) for n in re.findall(r"(\d+) more events skipped", r.stderr))
        assert len(written) == 2000 - one_by_one - summarized
    elif policy == "dead_letter":
        dead = records(workdir / "out/errors-dead-letter.jsonl")
        assert len(written) + len(dead) == 2000
        assert all(d["payload"]["quantity"] == 9 and d["stage"] == "review" for d in dead)
    else:
        assert [e["id"] for e in written] == list(range(200))  # every failed first attempt retried
