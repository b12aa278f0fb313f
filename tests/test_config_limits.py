"""Config limits: an alias bomb and an oversized file are clear config errors, and config errors are
JSON log lines under ``--log-format json``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from streamflow.cli import cli
from streamflow.config import document, fast_yaml, load_yaml
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


SAMPLE = """\
# a comment
name: sample   # trailing comment
plain: [yes, on, off, 0o17, 017, 0x1F, 1_000, .inf, ~, null, true, False, 1e3, -.5, +12, 2023-01-01, '', x]
quoted: {a: "5", b: 'true', c: "line\\nbreak"}
empty:
base: &base {x: 1, y: 2}
merged:
  <<: *base
  y: 3
again: *base
block:
  - a
  - {k: v}
  -
    - nested
"""


def positions(node: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every (path, line, col) the tree records, as `Document` reads them."""
    lc = getattr(node, "lc", None)
    out: list[tuple[object, ...]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if lc is not None and lc.data and k in lc.data:
                out.append((*path, k, *lc.data[k]))
            out += positions(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*path, i, *lc.item(i)))
            out += positions(v, (*path, i))
    return out


@pytest.mark.skipif(not fast_yaml.AVAILABLE, reason="PyYAML without libyaml")
def test_the_libyaml_tree_is_ruamels_tree_values_and_positions() -> None:
    fast = fast_yaml.load(SAMPLE)
    slow = YAML(typ="rt").load(SAMPLE)
    assert document.Document("f", fast).to_plain() == document.Document("f", slow).to_plain()
    # an empty value is placed right after its key by libyaml, at the next line by ruamel: either names
    # the line of the key that has no value
    assert [p for p in positions(fast) if p[0] != "empty"] == [p for p in positions(slow) if p[0] != "empty"]
    assert fast["plain"][:3] == ["yes", "on", "off"] and fast["plain"][3] == 15
    assert fast["again"] is fast["base"]  # an alias is the same object, as with ruamel


@pytest.mark.skipif(not fast_yaml.AVAILABLE, reason="PyYAML without libyaml")
def test_a_duplicate_key_is_a_yaml_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nsource: {type: memory}\nname: b\n")
    with pytest.raises(InvalidConfig, match=r"dup.yaml:3:1: YAML syntax error: found duplicate key 'name'"):
        load_yaml(path)
