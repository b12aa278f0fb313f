"""Config limits: an alias bomb and an oversized file are clear config errors, and config errors are
JSON log lines under ``--log-format json``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streamflow.cli import cli
from streamflow.config import document, load_yaml
from streamflow.config.errors import InvalidConfig

BOMB = """\
name: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
source: {type: generator, count: 1, template: {x: *i}}
sink: {type: stdout}
"""


def test_an_alias_bomb_is_a_config_error_naming_where_it_expanded_too_far(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(document, "MAX_VALUES", 10_000)
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(InvalidConfig) as caught:
        load_yaml(path)
    [issue] = caught.value.issues
    assert "expands to more than 10,000 values" in issue.message and "alias" in issue.message
    assert issue.location.startswith(f"{path}:")


def test_aliases_within_the_limit_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("name: ok\nsource: {type: generator, count: 1, template: &t {x: {seq: true}}}\n"
                    "sink: {type: stdout}\n")
    assert load_yaml(path).name == "ok"


def test_a_pipeline_file_larger_than_the_limit_is_refused_before_parsing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(document, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n" + "# padding\n" * 200)
    with pytest.raises(InvalidConfig, match="the pipeline file is 2,010 bytes; at most 1,000 are read"):
        load_yaml(path)


def test_config_errors_are_json_lines_with_log_format_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nsource: {type: generator, count: -1}\nsink: {type: stdout, colour: red}\n")
    result = CliRunner().invoke(cli, ["run", str(path), "--log-format", "json", "--quiet"])
    assert result.exit_code == 2
    records = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert len(records) == 2 and {r["level"] for r in records} == {"ERROR"}
    assert {(r["line"], r["field"]) for r in records} == {(2, "source.count"), (3, "sink.colour")}
    assert all(r["location"].startswith(f"{path}:") and r["error"] == "config" for r in records)
