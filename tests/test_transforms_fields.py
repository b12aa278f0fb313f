"""set, rename, drop and keep."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.transforms.fields import Drop, Keep, Rename, SetFields


def run(kind: str, values: list[Any], batch_size: int = 100, dead_letter: MemorySink | None = None,
        **options: Any) -> tuple[list[Any], MemorySource, Any]:
    source = MemorySource(values=values, batch_size=batch_size)
    sink = MemorySink()
    p = Pipeline("t").source(source).transform(kind, **options).sink(sink)
    if dead_letter is not None:
        p.dead_letter(dead_letter)
    result = p.run(handle_signals=False)
    return sink.values, source, result


# -- set -----------------------------------------------------------------------------
def test_set_top_level_constants() -> None:
    out, source, _ = run("set", [{"a": 1}, {"a": 2, "env": "dev"}], fields={"env": "prod", "v": 2})
    assert out == [{"a": 1, "env": "prod", "v": 2}, {"a": 2, "env": "prod", "v": 2}]
    assert source.committed == {0: 2}


def test_set_dotted_paths_create_nested_mappings() -> None:
    out, _, _ = run("set", [{"a": 1}, {"meta": {"x": 1}}], fields={"meta.source": "kafka", "b": 0})
    assert out == [{"a": 1, "b": 0, "meta": {"source": "kafka"}},
                   {"meta": {"x": 1, "source": "kafka"}, "b": 0}]


def test_set_gives_each_event_its_own_copy_of_a_mutable_constant() -> None:
    out, _, _ = run("set", [{}, {}], fields={"tags": ["a"]})
    assert out == [{"tags": ["a"]}, {"tags": ["a"]}]
    out[0]["tags"].append("changed")
    assert out[1]["tags"] == ["a"]


def test_set_non_mapping_goes_to_error_policy() -> None:
    dlq = MemorySink()
    out, source, result = run("set", [{"a": 1}, [1, 2], {"a": 3}, {"meta": "str"}],
                              fields={"x": 1}, on_error="dead_letter", dead_letter=dlq)
    assert out == [{"a": 1, "x": 1}, {"a": 3, "x": 1}, {"meta": "str", "x": 1}]
    assert [r["payload"] for r in dlq.values] == [[1, 2]]
    out, _, result = run("set", [{"meta": "str"}, {"b": 1}], fields={"meta.source": "k"}, on_error="skip")
    assert out == [{"b": 1, "meta": {"source": "k"}}]
    assert next(s for s in result.stats if s.name == "set").skipped == 1


# -- rename --------------------------------------------------------------------------
def test_rename_fields_ignoring_missing() -> None:
    out, _, _ = run("rename", [{"a": 1, "c": 3}, {"c": 4}], fields={"a": "b"})
    assert out == [{"c": 3, "b": 1}, {"c": 4}]


def test_rename_is_simultaneous() -> None:
    out, _, _ = run("rename", [{"a": 1, "b": 2}], fields={"a": "b", "b": "a"})
    assert out == [{"a": 2, "b": 1}]


def test_rename_nested_paths() -> None:
    out, _, _ = run("rename", [{"user": {"id": 7, "n": "x"}, "ts": 5}],
                    fields={"user.id": "user_id", "ts": "meta.time"})
    assert out == [{"user": {"n": "x"}, "user_id": 7, "meta": {"time": 5}}]


def test_rename_after_a_failing_event_rewrites_nothing_twice() -> None:
    # a swap applied twice would undo itself: events before the failure must not be redone
    out, _, result = run("rename", [{"a": 1, "b": 2}, "oops", {"a": 3, "b": 4}],
                         fields={"a": "b", "b": "a"}, on_error="skip")
    assert out == [{"a": 2, "b": 1}, {"a": 4, "b": 3}]
    assert next(s for s in result.stats if s.name == "rename").errors == 1


# -- drop / keep ---------------------------------------------------------------------
def test_drop_fields() -> None:
    out, _, _ = run("drop", [{"a": 1, "b": 2, "m": {"x": 1, "y": 2}}, {"b": 1}], fields=["a", "m.x", "z.q"])
    assert out == [{"b": 2, "m": {"y": 2}}, {"b": 1}]


def test_keep_fields() -> None:
    out, _, _ = run("keep", [{"a": 1, "b": 2, "m": {"x": 1, "y": 2}}, {"b": 1, "m": 3}],
                    fields=["a", "m.x"])
    assert out == [{"a": 1, "m": {"x": 1}}, {}]


def test_keep_non_mapping_with_fail_policy_fails() -> None:
    _, source, result = run("keep", [{"a": 1}, 5], fields=["a"])
    assert result.exit_code == 1
    assert source.committed == {}


def test_builder_methods() -> None:
    sink = MemorySink()
    Pipeline("t").source(MemorySource(values=[{"a": 1, "b": 2}])) \
        .set(fields={"c": 3}).rename(fields={"a": "x"}).drop(fields=["b"]).keep(fields=["x", "c"]) \
        .sink(sink).run(handle_signals=False)
    assert sink.values == [{"x": 1, "c": 3}]


@pytest.mark.parametrize("cls, fields", [
    (SetFields, {"a..b": 1}), (Rename, {"a": ""}), (Drop, ["."]), (Keep, ["a."]),
])
def test_invalid_paths_are_config_errors(cls: Any, fields: Any) -> None:
    with pytest.raises(ValidationError, match="invalid field path"):
        cls(fields=fields)


@pytest.mark.parametrize("kind, fields, expected", [
    ("set", {"x": 0}, [{"a": 1, "x": 0}, {"a": 2, "x": 0}]),
    ("rename", {"a": "b"}, [{"b": 1}, {"b": 2}]),
    ("drop", ["a"], [{}, {}]),
    ("keep", ["a"], [{"a": 1}, {"a": 2}]),
])
def test_a_bad_event_mid_batch_leaves_the_others_done_once(kind: str, fields: Any, expected: list[Any]) -> None:
    out, source, result = run(kind, [{"a": 1}, "bad", {"a": 2}], fields=fields, on_error="skip")
    assert out == expected
    assert next(s for s in result.stats if s.name == kind).skipped == 1
    assert source.committed == {0: 3}
