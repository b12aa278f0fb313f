"""Pipeline files are read into plain values first (`event_yaml`), positions only for error messages.

The plain reading keeps every rule of the located one (`fast_yaml`): the same
values by the same YAML 1.2 rules, aliases shared (never expanded while
reading), merge keys, and every problem — duplicate keys, bad merges,
undefined or repeated anchors, a second document — reported with the same
message at the same line. Errors found by validation still name their line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamflow.config import Document, InvalidConfig, document, event_yaml, fast_yaml, load_yaml, loads_yaml

pytestmark = pytest.mark.skipif(not fast_yaml.AVAILABLE, reason="PyYAML without libyaml")

#: Documents of every shape the readers handle: scalars of each kind, flow and block, anchors,
#: aliases and merges (single, listed, inline, explicit tag), explicit tags, empty values.
DOCUMENTS = [
    """\
# a comment
name: sample   # trailing comment
plain: [yes, on, off, 0o17, 017, 0x1F, 1_000, .inf, ~, null, true, False, 1e3, -.5, +12, -0, 2023-01-01, x]
big: 123456789012345678901234567890
quoted: {a: "5", b: 'true', c: "line\\nbreak", d: '', e: "<<"}
tagged: {a: !!int "7", b: !!str 8, c: ! 9, d: !!float '1'}
empty:
base: &base {x: 1, y: 2}
other: &other {y: 20, z: 30}
merged:
  <<: *base
  y: 3
listed:
  a: 0
  <<: [*base, *other]
inline: {<<: {k: v}, j: w}
explicit: {!!merge <<: *base}
again: *base
scalar: &s 5
scalar_again: *s
block:
  - a
  - {k: v}
  -
    - nested
  - ? complex
    : value
""",
    "",
    "# only a comment\n",
    "just a string\n",
    "- 1\n- [2, 3]\n- {a: b}\n",
    "a: &a [1, 2]\nb: [*a, *a]\nc: {d: *a}\n",
]

#: Documents with a problem: each must be refused, with the message the located reading gives.
PROBLEMS = {
    "name: a\nsource: {type: memory}\nname: b\n": "f.yaml:3:1: YAML syntax error: found duplicate key 'name'",
    "1: a\n0x1: b\n": "f.yaml:2:1: YAML syntax error: found duplicate key 1",
    "? [1, 2]\n: x\n": "f.yaml:1:3: YAML syntax error: a mapping key must be a scalar",
    "a: &a [1]\n*a : x\n": "f.yaml:1:4: YAML syntax error: a mapping key must be a scalar",
    "b: &b 1\na:\n  <<: [*b]\n": "f.yaml:1:4: YAML syntax error: a merge key (<<) takes mappings",
    "a:\n  <<: 5\n": "f.yaml:2:7: YAML syntax error: a merge key (<<) takes mappings",
    "a: *nope\n": "f.yaml:1:4: YAML syntax error: found undefined alias",
    "a: &x 1\nb: &x 2\n": "f.yaml:2:4: YAML syntax error: second occurrence (found duplicate anchor; first occurrence)",
    "a: 1\n---\nb: 2\n": ("f.yaml:2:1: YAML syntax error: but found another document "
                          "(expected a single document in the stream)"),
    "a: [1, 2\n": "f.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)",
    "a: !custom x\n": "f.yaml:1:1: YAML syntax error: could not determine a constructor for the tag '!custom'",
}


def plain(node: Any) -> Any:
    """``node`` as builtin dicts and lists (aliases expanded), to compare two readings."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def positions_by_path(tree: Any, positions: event_yaml.Positions) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """Every position of a located reading, by the path of its value (the table is keyed by ids)."""
    out: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(node, (dict, list)) or len(path) > 8:
            return
        line, col, items = positions[id(node)]
        out[(*path, "@")] = (line, col)
        for key, where in items.items():
            out[(*path, key)] = tuple(where)
        for key, value in (node.items() if isinstance(node, dict) else enumerate(node)):
            walk(value, (*path, key))

    walk(tree, ())
    return out


@pytest.mark.parametrize("text", DOCUMENTS)
def test_the_plain_reading_has_the_values_and_positions_of_the_located_tree(text: str) -> None:
    located = fast_yaml.load(text)
    assert event_yaml.load(text) == plain(located)
    values, positions = event_yaml.load_located(text)
    assert values == plain(located)
    if isinstance(located, (dict, list)):
        assert positions_by_path(values, positions) == positions_by_path(located, document._positions_of(located))


def test_yaml_1_1_surprises_are_read_as_before_and_big_integers_exactly() -> None:
    data = event_yaml.load(DOCUMENTS[0])
    assert data["plain"][:7] == ["yes", "on", "off", 15, 17, 31, 1000]
    assert data["big"] == 123456789012345678901234567890 and isinstance(data["big"], int)
    assert data["quoted"] == {"a": "5", "b": "true", "c": "line\nbreak", "d": "", "e": "<<"}
    assert data["tagged"] == {"a": 7, "b": "8", "c": 9, "d": 1.0}
    assert data["merged"] == {"y": 3, "x": 1} and list(data["listed"]) == ["a", "x", "y", "z"]
    assert data["listed"]["y"] == 2  # the first mapping merged wins, as with ruamel


def test_aliases_are_shared_while_reading_so_a_bomb_costs_nothing_until_it_is_expanded() -> None:
    text = "a: &a [x, y]\n" + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                                      for p, c in zip("abcdefghijklmnopqrstuvwxy", "bcdefghijklmnopqrstuvwxyz", strict=True))
    data = event_yaml.load(text)  # 9**25 values once expanded: read at once because nothing is copied
    assert data["z"][0] is data["y"] and data["b"][8] is data["a"]
    with pytest.raises(InvalidConfig, match=r"f.yaml:\d+:\d+: .* expands to more than 1,000,000 values"):
        Document.parse(text, "f.yaml").to_plain()


@pytest.mark.parametrize(("text", "message"), list(PROBLEMS.items()))
def test_every_problem_is_refused_with_the_located_message(text: str, message: str) -> None:
    with pytest.raises(event_yaml.Unsure):
        event_yaml.load(text)
    with pytest.raises(InvalidConfig) as caught:
        Document.parse(text, "f.yaml")
    assert str(caught.value) == message


def big_pipeline(stages: int, last: str = "") -> str:
    return ("name: big\nsource: {type: generator, count: 1}\nstages:\n"
            + "".join(f"  - type: set   # stage {i}\n    name: set-{i}\n    fields: {{f{i}: {i}}}\n"
                      for i in range(stages))
            + f"  - type: set\n    name: last\n    fields: {{a: 1}}\n{last}sink:\n  type: stdout\n")


def test_a_valid_file_is_never_read_for_positions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> Any:
        raise AssertionError("positions read for a valid file")

    monkeypatch.setattr(event_yaml, "load_located", refuse)
    path = tmp_path / "big.yaml"
    path.write_text(big_pipeline(2000))
    assert len(load_yaml(path).transforms) == 2001


def test_an_error_found_by_validation_names_its_line_in_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    text = big_pipeline(2000, last="    colour: red\n")
    path.write_text(text)
    line = text.splitlines().index("    colour: red") + 1
    with pytest.raises(InvalidConfig) as caught:
        load_yaml(path)
    [issue] = caught.value.issues
    assert (issue.location, issue.path) == (f"{path}:{line}:5", "stages[2000].colour")
    assert issue.message.startswith("unknown key")


def test_positions_after_a_merge_and_a_set_override_are_those_of_the_located_reading() -> None:
    text = ("name: m\nbase: &base {type: generator, count: -1}\nsource:\n  <<: *base\n  name: gen\n"
            "sink: {type: stdout, colour: red}\n")
    with pytest.raises(InvalidConfig) as caught:
        loads_yaml(text, "m.yaml", overrides=["sink.type=stdout"])
    # `count` came in by the merge, so it has no position of its own: it is placed at the mapping it was
    # merged into, as the located tree placed it
    assert [str(i) for i in caught.value.issues] == [
        "m.yaml:2:1: base — unknown key; expected one of: name, plugins, settings, source, sources, stages, "
        "sink, sinks, dead_letter, tests",
        "m.yaml:4:3: source.count — Input should be greater than or equal to 0 (got -1)",
        "m.yaml:6:22: sink.colour — unknown key; expected one of: codec, framing, fields, csv_header, name, "
        "type, when",
    ]


def test_without_libyaml_ruamel_reads_the_file_and_errors_keep_their_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_yaml, "AVAILABLE", False)
    with pytest.raises(InvalidConfig) as caught:
        loads_yaml("name: r\nsource: {type: generator, count: -1}\nsink:\n  type: stdout\n  colour: red\n", "r.yaml")
    assert [(i.line, i.column, i.path) for i in caught.value.issues] == [(2, 34, "source.count"),
                                                                         (5, 3, "sink.colour")]


def test_an_alias_inside_the_value_it_names_is_a_config_error_not_a_crash() -> None:
    with pytest.raises(InvalidConfig, match=r"f.yaml:1:4: a\[1\] — a YAML alias \(\*name\) inside the value it "
                                            r"names"):
        Document.parse("a: &a [1, *a]\n", "f.yaml").to_plain()


def test_values_nested_too_deep_are_a_config_error_not_a_crash() -> None:
    depth = document.MAX_DEPTH
    Document.parse("a: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n", "f.yaml").to_plain()
    with pytest.raises(InvalidConfig, match=f"nested more than {depth} deep"):
        Document.parse("a: " + "[" * 600 + "]" * 600 + "\n", "f.yaml").to_plain()
