"""`streamflow test`: config unit tests of pipelines — passing, failing with a diff, broken test files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streamflow.testing import run_tests

ROOT = Path(__file__).resolve().parent.parent

PIPELINE = """
name: orders
source: {type: generator, count: 5, format: object, template: {id: {seq: true}}}
stages:
  - {type: parse, codec: json, on_error: dead_letter}
  - {type: filter, fn: "order_fns:is_big"}
  - {type: map, name: price, fn: "order_fns:price"}
sinks:
  - {type: file, path: out/all.jsonl}
  - {type: file, name: big, path: out/big.jsonl, when: "order_fns:is_huge"}
dead_letter: {type: file, path: out/dead.jsonl}
"""

FUNCTIONS = """
def is_big(order):
    return order["qty"] >= 2

def price(order):
    return {**order, "total": order["qty"] * 10}

def is_huge(order):
    return order["qty"] >= 5

def has_total(order):
    return "total" in order
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "orders.yaml").write_text(PIPELINE.lstrip())
    (tmp_path / "order_fns.py").write_text(FUNCTIONS)
    return tmp_path


def write_tests(project: Path, text: str, name: str = "orders.test.yaml") -> Path:
    path = project / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def run(*paths: Path) -> tuple[int, str]:
    lines: list[str] = []
    report = run_tests(paths, echo=lines.append)
    lines.append(report.summary())
    return report.exit_code, "\n".join(lines)


def test_the_examples_pass_through_the_cli() -> None:
    """CI runs every example's tests: `streamflow test pipelines/` from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "streamflow.cli", "test", "pipelines/"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout
    for example in ("demo.test.yaml", "sqlite.test.yaml", "errors/fail.yaml", "errors/skip.yaml",
                    "errors/retry.yaml", "errors/dead_letter.yaml", "[demo.py]",
                    "clicks_per_minute.test.yaml", "sessions.test.yaml"):
        assert example in proc.stdout
    assert not (ROOT / "pipelines" / "connector" / "orders.db").exists()  # the sink was in memory


def test_every_expectation_passes(project: Path) -> None:
    write_tests(project, """
        tests:
          - name: whole chain
            input: ['{"id": 1, "qty": 1}', '{"id": 2, "qty": 3}', '{"id": 3, "qty": 7}', '{"id": 4']
            expect:
              output: [{id: 2, qty: 3, total: 30}, {id: 3, qty: 7, total: 70}]
              output_subset: [{total: 30}, {id: 3}]
              output_check: order_fns:has_total
              output_count: 2
              sinks: {file: [{id: 2, qty: 3, total: 30}, {id: 3, qty: 7, total: 70}], big: [{id: 3, qty: 7, total: 70}]}
              dead_letters: [{stage: parse, error: JSONDecodeError, payload: '{"id": 4'}]
              filtered: 1
          - name: one stage
            stage: price
            input: [{qty: 1}]
            expect: {output: [{qty: 1, total: 10}], filtered: 0, dead_letters: 0}
    """)
    code, out = run(project)
    assert code == 0, out
    assert "2 passed, 0 failed" in out
    assert not (project / "out").exists()  # file sinks were replaced


def test_a_failing_case_exits_1_with_a_diff(project: Path) -> None:
    write_tests(project, """
        tests:
          - name: wrong total
            input: ['{"id": 2, "qty": 3}']
            expect:
              output: [{id: 2, qty: 3, total: 31}]
              filtered: 1
              output_check: [order_fns:is_huge]
    """)
    code, out = run(project / "orders.test.yaml")
    assert code == 1
    assert "FAIL" in out and "orders.test.yaml:2" in out and "wrong total" in out
    assert '-    "total": 31' in out and '+    "total": 30' in out
    assert "filtered: expected 1, got 0" in out
    assert "output_check order_fns:is_huge: false for 1 of 1 events" in out
    assert "0 passed, 1 failed" in out


def test_expected_failure_and_unexpected_failure(project: Path) -> None:
    write_tests(project, """
        tests:
          - name: expects the run to fail
            stage: price
            input: [{no_qty: 1}]
            expect: {error: "KeyError: 'qty'"}
          - name: does not expect it
            stage: price
            input: [{no_qty: 1}]
            expect: {output: []}
    """)
    code, out = run(project)
    assert code == 1
    assert "1 passed, 1 failed" in out and "the pipeline failed" in out and "KeyError" in out


@pytest.mark.parametrize("text, where, message", [
    ("tests:\n  - name: x\n    input: []\n    expect: {outptu: []}\n", ":4:", "unknown key (did you mean 'output'?)"),
    ("tests:\n  - name: x\n    input: []\n    stage: nope\n    expect: {output: []}\n", ":4:",
     "has no stage 'nope'; its stages: parse, filter, price"),
    ("tests:\n  - name: x\n    input: []\n    expect: {output_check: order_fns:nope}\n", ":4:",
     "has no attribute 'nope'"),
    ("pipeline: missing.yaml\ntests: []\n", ":1:", "no such file"),
    ("tests:\n  - {name: x, expect: {}}\n", ":2:", "tests[0].input — missing required key"),
])
def test_a_broken_test_file_exits_2_at_its_line(project: Path, text: str, where: str, message: str) -> None:
    (project / "orders.test.yaml").write_text(text)
    code, out = run(project)
    assert code == 2, out
    assert f"orders.test.yaml{where}" in out and message in out and "BROKEN" in out


def test_tests_key_in_the_pipeline_file(project: Path) -> None:
    pipeline = project / "orders.yaml"
    pipeline.write_text(pipeline.read_text() + textwrap.dedent("""
        tests:
          - name: embedded
            stage: filter
            input: [{qty: 1}, {qty: 2}]
            expect: {output: [{qty: 2}], filtered: 1}
    """))
    code, out = run(project)  # found in the directory by its `tests:` key
    assert code == 0 and "1 passed" in out and "orders.yaml" in out, out
    from streamflow.config import load_yaml

    assert load_yaml(pipeline).name == "orders"  # `run` ignores the key


WINDOWED = """
name: counts
source: {type: generator, count: 1}
stages:
  - {type: window, size: 10, time_field: t, allowed_lateness: 1, late: error, on_error: dead_letter,
     aggregate: {ids: {collect: id}}}
sinks: [{type: file, path: out/counts.jsonl}]
dead_letter: {type: file, path: out/dead.jsonl}
"""


@pytest.mark.parametrize("batch_size, windows, late", [
    (1, [{"window_start": 0, "window_end": 10, "ids": [1]}, {"window_start": 10, "window_end": 20, "ids": [2]}],
     [{"t": 3, "id": 3}]),
    (None, [{"window_start": 0, "window_end": 10, "ids": [1, 3]},
            {"window_start": 10, "window_end": 20, "ids": [2]}], []),
])
def test_batch_size_moves_the_watermark_between_events(tmp_path: Path, batch_size: int | None,
                                                       windows: list[dict], late: list[dict]) -> None:
    """Lateness is judged per input batch: one batch of everything has no late event, batches of one do."""
    (tmp_path / "counts.yaml").write_text(WINDOWED.lstrip())
    case = {"name": "late", "input": [{"t": 1, "id": 1}, {"t": 15, "id": 2}, {"t": 3, "id": 3}],
            "expect": {"output": windows, "dead_letters": [{"stage": "window", "error": "LateEvent", "payload": e}
                                                           for e in late]}}
    if batch_size is not None:
        case["batch_size"] = batch_size
    write_tests(tmp_path, json.dumps({"tests": [case]}), name="counts.test.yaml")
    code, out = run(tmp_path)
    assert code == 0 and "1 passed" in out, out


def test_a_pipeline_that_does_not_load_is_broken(project: Path) -> None:
    (project / "orders.yaml").write_text(PIPELINE.replace("order_fns:price", "order_fns:prise"))
    write_tests(project, "tests:\n  - {name: x, input: [], expect: {output: []}}\n")
    code, out = run(project)
    assert code == 2 and "did you mean 'order_fns:price'?" in out, out
