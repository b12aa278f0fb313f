"""YAML pipeline files build the same `Pipeline` graph as the Python API, and run."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import streamflow
from streamflow import Pipeline
from streamflow.config import InvalidConfig, load_yaml, loads_yaml
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.errors import ConfigError
from streamflow.core.runner import EXIT_OK

FUNCTIONS = """
def double(x):
    return x * 2

async def double_async(x):
    return x * 2

def is_big(x):
    return x > 4

def small(x):
    return x <= 4
"""


@pytest.fixture
def fns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A user module of functions on sys.path, under a name unique to this test."""
    name = f"fns_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FUNCTIONS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_yaml_builds_every_section(tmp_path: Path, fns: str) -> None:
    cfg = write(tmp_path / "p.yaml", f"""
        name: demo
        settings: {{shutdown_timeout: 5, commit_interval: 0.5, channel: {{max_batches: 3, max_events: 100}}}}
        sources:
          - {{type: memory, name: a, values: [1, 2]}}
          - {{type: memory, name: b, values: [3]}}
        stages:
          - {{type: map, fn: "{fns}:double", on_error: dead_letter}}
          - type: filter
            fn: {fns}:is_big
            on_error: {{policy: retry, max_attempts: 2, then: skip}}
        sinks:
          - {{type: memory, name: all}}
          - {{type: memory, name: small, when: "{fns}:small"}}
        dead_letter: {{type: memory, name: dlq}}
        """)
    p = load_yaml(cfg)
    assert isinstance(p, Pipeline) and p.name == "demo"
    assert p.settings.shutdown_timeout == 5 and p.settings.commit_interval == 0.5
    assert (p.settings.channel.max_batches, p.settings.channel.max_events) == (3, 100)
    assert [s.name for s in p.sources] == ["a", "b"]
    assert [t.type_name for t in p.transforms] == ["map", "filter"]
    assert p.transforms[0].config.on_error.policy == "dead_letter"
    assert p.transforms[1].config.on_error.max_attempts == 2
    assert [r.sink.name for r in p.sinks] == ["all", "small"]
    assert p.sinks[0].when is None and p.sinks[1].when(3) is True and p.sinks[1].when(5) is False
    assert p.dead_letter_sink is not None and p.dead_letter_sink.name == "dlq"

    result = p.run(handle_signals=False)
    assert result.exit_code == EXIT_OK
    all_sink, small_sink = (r.sink for r in p.sinks)
    assert isinstance(all_sink, MemorySink) and isinstance(small_sink, MemorySink)
    assert sorted(all_sink.values) == [6]  # 1,2,3 doubled; only 6 is big
    assert small_sink.values == []


def test_single_sink_form_and_routing_run(tmp_path: Path, fns: str) -> None:
    p = loads_yaml(f"""
name: single
source: {{type: memory, values: [1, 5, 2, 9]}}
sink: {{type: memory, when: "{fns}:is_big"}}
""")
    p.run(handle_signals=False)
    sink = p.sinks[0].sink
    assert isinstance(sink, MemorySink) and sink.values == [5, 9]


def test_yaml_and_python_definitions_give_the_same_graph(tmp_path: Path, fns: str) -> None:
    cfg = write(tmp_path / "p.yaml", f"""
        name: same
        settings: {{channel: {{max_batches: 4}}}}
        source: {{type: memory, values: [1, 2, 3]}}
        stages:
          - {{type: parse, codec: json, on_error: dead_letter}}
          - {{type: map, fn: "{fns}:double_async", concurrency: 4}}
        sinks:
          - {{type: memory, name: out}}
          - {{type: memory, name: big, when: "{fns}:is_big"}}
        dead_letter: {{type: memory, name: dlq}}
        """)
    module = write(tmp_path / "same_pipeline.py", f"""
        from streamflow import Pipeline
        from {fns} import double_async, is_big

        pipeline = (
            Pipeline("same", channel={{"max_batches": 4}})
            .source("memory", values=[1, 2, 3])
            .parse("json", on_error="dead_letter")
            .map(double_async, concurrency=4)
            .sink("memory", name="out")
            .sink("memory", name="big", when=is_big)
            .dead_letter("memory", name="dlq")
        )
        """)
    from_yaml = streamflow.load(cfg)
    from_python = streamflow.load(module)
    assert from_yaml.graph() == from_python.graph()
    assert "route" in from_yaml.graph() and "when is_big" in from_yaml.graph()


def test_load_python_targets(tmp_path: Path, fns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = f"pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    write(tmp_path / pkg / "flows.py", """
        from streamflow import Pipeline

        def make():
            return Pipeline("factory").source("memory", values=[1]).sink("memory")

        orders = Pipeline("orders").source("memory", values=[1]).sink("memory")
        not_a_pipeline = 42
        """)
    path = tmp_path / pkg / "flows.py"
    assert streamflow.load(f"{path}:orders").name == "orders"
    assert streamflow.load(f"{path}:make").name == "factory"
    assert streamflow.load(f"{pkg}.flows:orders").name == "orders"
    assert streamflow.load(f"{pkg}.flows:make").name == "factory"
    with pytest.raises(ConfigError, match="no attribute 'pipeline'.*pipelines defined there: orders"):
        streamflow.load(path)
    with pytest.raises(ConfigError, match="is a int, expected a Pipeline"):
        streamflow.load(f"{path}:not_a_pipeline")
    with pytest.raises(ConfigError, match="no such module"):
        streamflow.load("no_such_pkg_xyz.mod:pipeline")
    with pytest.raises(ConfigError, match="no such file"):
        streamflow.load(tmp_path / "missing.py")
    with pytest.raises(ConfigError, match="YAML pipelines only"):
        streamflow.load(f"{path}:orders", overrides=["name=x"])
    sys.modules.pop(f"{pkg}.flows", None)
    sys.modules.pop(pkg, None)


def test_python_module_that_fails_to_import_is_a_config_error(tmp_path: Path) -> None:
    bad = write(tmp_path / "broken_flow.py", """
        from streamflow import Pipeline

        pipeline = Pipeline("broken").source("memory", valuez=[1]).sink("memory")
        """)
    with pytest.raises(ConfigError) as info:
        streamflow.load(bad)
    assert "broken_flow.py" in str(info.value) and "valuez" in str(info.value)
    invalid = write(tmp_path / "no_sink_flow.py", """
        from streamflow import Pipeline

        pipeline = Pipeline("nosink").source("memory", values=[1])
        """)
    with pytest.raises(ConfigError, match="has no sink"):
        streamflow.load(invalid)


def test_unknown_target_kind() -> None:
    with pytest.raises(ConfigError, match="expected a .yaml/.yml file"):
        streamflow.load("pipeline.toml")
    with pytest.raises(ConfigError, match="a YAML file holds one pipeline"):
        streamflow.load("pipeline.yaml:other")


def test_memory_source_values_from_yaml_are_plain_python() -> None:
    p = loads_yaml("""
name: plain
source: {type: memory, values: [1.5, 0x10, 'a', true, null]}
sink: {type: memory}
""")
    src = p.sources[0]
    assert isinstance(src, MemorySource)
    assert src.config.values == [1.5, 16, "a", True, None]
    assert [type(v) for v in src.config.values] == [float, int, str, bool, type(None)]


def test_invalid_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        loads_yaml("name: x\n")
    assert issubclass(InvalidConfig, ConfigError)
