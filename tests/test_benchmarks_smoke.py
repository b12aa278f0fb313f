"""Smoke test of the benchmark harness: every workload runs on a tiny N and its output is checked.

Nothing here looks at timings; the harness exits non-zero when any variant
fails or writes wrong output (missing, extra or altered records, uncommitted
offsets), and the JSON lines it appends must show every variant ``ok``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_smoke(tmp_path: Path, *args: str) -> list[dict]:
    results = tmp_path / "results.jsonl"
    env = {**os.environ, "STREAMFLOW_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--smoke", "--json", str(results), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"benchmarks failed:\n{proc.stdout}\n{proc.stderr}"
    return [json.loads(line) for line in results.read_text().splitlines()]


def test_local_workloads_produce_correct_output(tmp_path: Path) -> None:
    rows = run_smoke(tmp_path, "--workload", "file-enrich", "--workload", "io-enrich", "--workload", "memory")
    got = {(r["workload"], r["variant"]): r for r in rows}
    assert set(got) == {("file-enrich", "bare"), ("file-enrich", "streamflow"),
                        ("io-enrich", "bare"),
                        ("io-enrich", "streamflow"), ("io-enrich", "sync-reference"),
                        ("memory", "1M"), ("memory", "5M")}
    for key, row in got.items():
        assert row["status"] == "ok", (key, row["status"])
        assert len(row["samples"]) == 1 and row["samples"][0]["events"] > 0
        assert row["samples"][0]["peak_rss_kib"] > 0
    assert got[("file-enrich", "streamflow")]["samples"][0]["events"] == 2000
    assert got[("memory", "5M")]["samples"][0]["events"] == 5 * got[("memory", "1M")]["samples"][0]["events"]
    assert got[("memory", "5M")]["samples"][0]["blocked_seconds"] > 0  # the slow sink held the source back


def test_reference_revision_runs_alternating_with_this_tree(tmp_path: Path) -> None:
    """`--reference REV` adds the reference tree's streamflow variants (checked like the others)."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    rows = run_smoke(tmp_path, "--workload", "file-enrich", "--reference", rev)
    got = {r["variant"]: r for r in rows}
    assert set(got) == {"bare", "streamflow", f"streamflow@{rev}"}
    assert all(row["status"] == "ok" for row in got.values())
    assert got[f"streamflow@{rev}"]["samples"][0]["events"] == 2000


@pytest.mark.kafka
def test_kafka_workload_produces_correct_output(tmp_path: Path, kafka_broker) -> None:
    rows = run_smoke(tmp_path, "--workload", "kafka-enrich", "--bootstrap", kafka_broker.bootstrap)
    got = {r["variant"]: r for r in rows}
    assert set(got) == {"bare-aiokafka-send", "bare-aiokafka-batch", "streamflow", "streamflow-w2"}  # no peers
    for variant, row in got.items():
        assert row["status"] == "ok", (variant, row["status"])
        assert row["samples"][0]["events"] == 2000


@pytest.mark.kafka
def test_kafka_workload_runs_against_the_kfake_broker(tmp_path: Path) -> None:
    """`--broker kfake`: the run builds and starts kfake (tests/kafka/kfake_broker.py) itself."""
    rows = run_smoke(tmp_path, "--workload", "kafka-enrich", "--broker", "kfake")
    got = {r["variant"]: r for r in rows}
    assert set(got) == {"bare-aiokafka-send", "bare-aiokafka-batch", "streamflow", "streamflow-w2"}
    for variant, row in got.items():
        assert row["status"] == "ok", (variant, row["status"])  # "n/a: no kfake broker …" without Go
        assert row["samples"][0]["events"] == 2000


@pytest.mark.kafka
def test_stateful_workloads_produce_correct_output(tmp_path: Path, kafka_broker) -> None:
    rows = run_smoke(tmp_path, "--workload", "kafka-count", "--workload", "state-restore",
                     "--bootstrap", kafka_broker.bootstrap)
    got = {(r["workload"], r["variant"]): r for r in rows}
    assert set(got) == {("kafka-count", "streamflow-memory"), ("kafka-count", "streamflow-disk"),
                        ("state-restore", "memory"), ("state-restore", "disk")}
    for variant, row in got.items():
        assert row["status"] == "ok", (variant, row["status"])  # every count and every restored key checked


def test_output_check_catches_a_missing_or_altered_record(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("STREAMFLOW_BENCH_CACHE", str(tmp_path / "cache"))
    from benchmarks import data

    n = 500
    index = data.table_index()
    records = [data.enrich_reference(e, index) for e in data.iter_events(n) if data.keep(e)]
    expected = data.expected_enrich_digest(n)
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
    assert data.file_digest(good).mismatch(expected) is None

    missing = tmp_path / "missing.jsonl"
    missing.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records[1:]))
    assert data.file_digest(missing).mismatch(expected) is not None

    altered = [dict(r) for r in records]
    altered[7]["region"] = "nowhere"
    bad = tmp_path / "altered.jsonl"
    bad.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in altered))
    assert data.file_digest(bad).mismatch(expected) is not None
