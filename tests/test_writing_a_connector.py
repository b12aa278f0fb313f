"""The README's "Writing a connector" example: its code is the shipped file, and it runs as written."""

from __future__ import annotations

import importlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from streamflow import Pipeline
from streamflow.config import InvalidConfig, loads_yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "pipelines" / "connector"
README = (ROOT / "README.md").read_text()


def streamflow(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamflow.cli", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)


def rows(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT offset, value FROM orders ORDER BY offset").fetchall()


def test_readme_shows_the_shipped_files_verbatim() -> None:
    for name in ("sqlite_sink.py", "sqlite.yaml", "sqlite_source.py", "mask.py", "copy.yaml"):
        assert (EXAMPLE / name).read_text().rstrip("\n") in README, f"README's copy of {name} is stale"


def test_the_example_runs_from_the_cli_and_replays_are_not_stored_twice(tmp_path: Path) -> None:
    subprocess.run(["cp", "-r", str(ROOT / "pipelines"), str(tmp_path / "pipelines")], check=True)
    for _ in range(2):
        r = streamflow("run", "pipelines/connector/sqlite.yaml", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "completed: 1000 in, 1000 out" in r.stderr
    stored = rows(tmp_path / "orders.db")
    assert [offset for offset, _ in stored] == list(range(1000))
    assert stored[0][1].startswith('{"id":0,"amount":')


def test_the_example_is_usable_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    SqliteSink = importlib.import_module("sqlite_sink").SqliteSink
    db = tmp_path / "o.db"
    result = (Pipeline("p").source("generator", count=10, format="object")
              .sink(SqliteSink(path=str(db), table="orders")).run(handle_signals=False))
    assert result.exit_code == 0
    assert [offset for offset, _ in rows(db)] == list(range(10))


def test_a_bad_table_name_is_a_config_error_before_anything_opens(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        with pytest.raises(InvalidConfig) as info:
            loads_yaml("name: p\nplugins: [sqlite_sink]\nsource: {type: generator, count: 1}\n"
                       f"sink: {{type: sqlite, path: {tmp_path / 'x.db'}, table: 'x; drop'}}\n")
    finally:
        sys.path.remove(str(EXAMPLE))
    assert "sink.table" in str(info.value) and "should match pattern" in str(info.value)
    assert not (tmp_path / "x.db").exists()


def test_a_plugin_that_cannot_be_imported_is_a_config_error() -> None:
    with pytest.raises(InvalidConfig) as info:
        loads_yaml("name: p\nplugins: [no_such_module_here]\nsource: {type: generator, count: 1}\n"
                   "sink: {type: stdout}\n", filename="p.yaml")
    assert "p.yaml:2:" in str(info.value)
    assert "cannot import plugin module 'no_such_module_here'" in str(info.value)


def test_every_streamflow_import_the_readme_shows_works() -> None:
    imports = re.findall(r"from (streamflow[\w.]*) import ([\w, ]+)", README)
    assert imports
    for module, names in imports:
        mod = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(mod, name.strip()), f"README: from {module} import {name.strip()}"


def test_the_author_api_exports_what_it_lists() -> None:
    api = importlib.import_module("streamflow.api")
    assert all(hasattr(api, name) for name in api.__all__)
    for name in ("Source", "Transform", "Sink", "Codec", "Aggregation", "SINKS", "ComponentConfig"):
        assert name in api.__all__


def test_the_source_and_transform_examples_read_back_and_resume(tmp_path: Path) -> None:
    subprocess.run(["cp", "-r", str(ROOT / "pipelines"), str(tmp_path / "pipelines")], check=True)
    assert streamflow("run", "pipelines/connector/sqlite.yaml", cwd=tmp_path).returncode == 0
    first = streamflow("run", "pipelines/connector/copy.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [e["id"] for e in events] == list(range(1000))
    assert all(re.fullmatch(r"\*{0,2}\d", e["amount"]) for e in events)  # 1..500, all but the last digit
    assert any(e["amount"].startswith("**") for e in events)
    again = streamflow("run", "pipelines/connector/copy.yaml", cwd=tmp_path)
    assert again.returncode == 0 and "completed: 0 in, 0 out" in again.stderr  # resumed after the last row
