"""Config errors (contract 6): every problem reported at once, with file, line, field path and fix."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, SecretStr

from streamflow.config import InvalidConfig, load_yaml
from streamflow.connectors.memory import MemorySink, MemorySource, MemorySourceConfig
from streamflow.core.registry import SINKS, SOURCES
from streamflow.core.stage import ComponentConfig, Sink, StageContext

OPENED: list[str] = []


class RecordingSourceConfig(MemorySourceConfig):
    """The memory source's keys."""


@SOURCES.register("test_recording")
class RecordingSource(MemorySource):
    """A memory source that records when it is opened (it must not be, for a bad config)."""

    Config = RecordingSourceConfig

    async def open(self, ctx: StageContext) -> None:
        OPENED.append(self.name)
        await super().open(ctx)


class PathSinkConfig(ComponentConfig):
    path: str = Field(description="where to write")
    password: SecretStr | None = Field(None, description="a secret")
    retries: int = Field(3, ge=0, description="a number")


@SINKS.register("test_path_sink")
class PathSink(Sink):
    """A sink with a required `path`, for error messages about it."""

    Config = PathSinkConfig

    async def write(self, batch: Any) -> None:
        pass


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based number of the first line of ``path`` containing ``needle``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def errors(path: Path, **kw: Any) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        load_yaml(path, **kw)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.issues)
    return lines


def one_error(path: Path, **kw: Any) -> str:
    lines = errors(path, **kw)
    assert len(lines) == 1, lines
    return lines[0]


def test_misspelled_key_points_at_the_key_and_suggests(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory}
        sinks:
          - type: test_path_sink
            pathh: out/x.jsonl
        """)
    err = errors(cfg)
    line = line_of(cfg, "pathh")
    assert f"{cfg}:{line}:5: sinks[0].pathh — unknown key (did you mean 'path'?)" in err
    # and the required key it replaced is missing, reported at the sink's mapping
    assert f"{cfg}:{line_of(cfg, 'test_path_sink')}:5: sinks[0].path — missing required key" in err


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory}
        sink: {type: memory, zzz: 1}
        """)
    err = one_error(cfg)
    assert err.startswith(f"{cfg}:3:22: sink.zzz — unknown key; expected one of: name, delay")


def test_wrong_type_names_field_expectation_and_value(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source:
          type: memory
          batch_size: lots
        sink: {type: memory}
        """)
    err = one_error(cfg)
    assert err.startswith(f"{cfg}:4:15: source.batch_size — Input should be a valid integer")
    assert "(got 'lots')" in err


def test_unknown_component_type_lists_known_types(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memroy}
        stages:
          - {type: mapp, fn: "x:y"}
        sink: {type: memory}
        """)
    src_err, stage_err = errors(cfg)
    assert src_err.startswith(f"{cfg}:2:16: source.type — unknown source type 'memroy' (did you mean 'memory'?)")
    assert "expected one of: " in src_err and "memory" in src_err.split("expected one of: ")[1]
    assert stage_err.startswith(f"{cfg}:4:12: stages[0].type — unknown transform type 'mapp' (did you mean 'map'?)")


def test_function_references_that_cannot_be_imported(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory}
        stages:
          - type: map
            fn: "nomodule_xyz:func"
          - type: filter
            fn: not a path
        sinks:
          - {type: memory, when: "os.path:no_such_function"}
        """)
    imp, path, when = errors(cfg)
    assert imp.startswith(f"{cfg}:{line_of(cfg, 'nomodule_xyz')}:9: stages[0].fn — cannot import module 'nomodule_xyz'")
    assert path.startswith(f"{cfg}:{line_of(cfg, 'not a path')}:9: stages[1].fn — expected a 'module:function'")
    assert when == f"{cfg}:{line_of(cfg, 'when')}:26: sinks[0].when — module 'os.path' has no attribute 'no_such_function'"


def test_missing_required_key_points_at_the_parent_mapping(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory}
        stages:
          - type: map
            concurrency: 2
        sink: {type: memory}
        """)
    assert one_error(cfg) == f"{cfg}:4:5: stages[0].fn — missing required key"


def test_missing_type_name_and_top_level_keys(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        settings:
          shutdown_timeout: -1
          chanel: {max_batches: 2}
        sinks:
          - {path: x}
        extra_top: 1
        """)
    err = errors(cfg)
    assert f"{cfg}:1:1: name — missing required key" in err
    assert f"{cfg}:1:1: source (or sources) — missing required key" in err
    assert any(e.startswith(f"{cfg}:2:21: settings.shutdown_timeout — Input should be greater than 0") for e in err)
    assert f"{cfg}:3:3: settings.chanel — unknown key (did you mean 'channel'?)" in err
    assert any(e.startswith(f"{cfg}:5:5: sinks[0].type — missing required key (one of: ") for e in err)
    assert any(e.startswith(f"{cfg}:6:1: extra_top — unknown key") for e in err)


def test_all_errors_are_reported_in_file_order(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory, batch_size: 0}
        stages:
          - {type: map, fn: "nomodule_xyz:f", concurency: 2}
          - {type: filter}
        sinks:
          - {type: test_path_sink, path: x, retries: many}
          - {type: nope}
        """)
    err = errors(cfg)
    assert len(err) == 6
    lines = [int(e.split(":")[1]) for e in err]
    assert lines == sorted(lines) and lines == [2, 4, 4, 5, 7, 8]


def test_both_source_and_sources(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory}
        sources: [{type: memory}]
        sink: {type: memory}
        """)
    assert one_error(cfg) == f"{cfg}:3:1: sources — give either `source` or `sources`, not both"


def test_component_validator_errors_are_located(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory}
        stages:
          - {type: parse, codec: no_such_codec}
        sink: {type: memory}
        """)
    err = one_error(cfg)
    assert err.startswith(f"{cfg}:4:26: stages[0].codec — unknown codec type 'no_such_codec'")


def test_graph_level_errors_after_components_validate(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory}
        stages:
          - {type: map, fn: "os.path:basename", on_error: dead_letter}
        sink: {type: memory}
        """)
    err = one_error(cfg)
    assert err.startswith(f"{cfg}:1:1: ") and "no dead_letter sink" in err


def test_yaml_syntax_error_has_ruamel_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: demo
        source: {type: memory
        sink: {type: memory}
        """)
    err = one_error(cfg)
    assert err.startswith(f"{cfg}:3:") and "YAML syntax error" in err
    dup = write(tmp_path, "name: a\nname: b\nsource: {type: memory}\n", "dup.yaml")
    err = one_error(dup)
    assert err.startswith(f"{dup}:2:1: YAML syntax error") and "duplicate key" in err


def test_file_that_is_not_a_mapping_or_missing(tmp_path: Path) -> None:
    cfg = write(tmp_path, "- just\n- a list\n")
    assert "expected a mapping" in one_error(cfg)
    missing = tmp_path / "missing.yaml"
    assert one_error(missing).startswith(f"{missing}: cannot read the pipeline file")


def test_bad_config_fails_before_any_component_is_opened(tmp_path: Path) -> None:
    OPENED.clear()
    good = write(tmp_path, """
        name: demo
        source: {type: test_recording, name: rec, values: [1, 2]}
        sink: {type: memory}
        """, "good.yaml")
    bad = write(tmp_path, """
        name: demo
        source: {type: test_recording, name: rec, values: [1, 2]}
        stages:
          - {type: map, fn: "nomodule_xyz:f"}
        sink: {type: memory, delay: soon}
        """, "bad.yaml")
    assert len(errors(bad)) == 2
    assert OPENED == []
    # control: the same source in a valid file is opened when run
    result = load_yaml(good).run(handle_signals=False)
    assert result.exit_code == 0 and OPENED == ["rec"]
    sink = load_yaml(good).sinks[0].sink
    assert isinstance(sink, MemorySink)
