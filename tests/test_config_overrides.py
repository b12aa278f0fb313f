"""``--set key.path=value`` overrides of a YAML pipeline, applied before validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.config import InvalidConfig, load_yaml
from streamflow.config.overrides import parse_value
from streamflow.connectors.memory import MemorySink, MemorySource

YAML = """name: demo
source:
  type: memory
  values: [1, 2, 3]
sinks:
  - {type: memory, name: a}
  - {type: memory, name: b}
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(YAML)
    return path


def test_overrides_set_values_inside_mappings_and_lists(cfg: Path) -> None:
    p = load_yaml(cfg, overrides=[
        "source.batch_size=10",            # a new key in an existing mapping
        "source.values=[7, 8]",            # YAML value
        "sinks.1.delay=0.5",               # list index
        "sinks.0.name=first",
        "settings.shutdown_timeout=5",     # settings are created when absent
        "settings.channel.max_batches=2",
        "name=renamed",
    ])
    src = p.sources[0]
    assert isinstance(src, MemorySource)
    assert src.config.batch_size == 10 and src.config.values == [7, 8]
    b = p.sinks[1].sink
    assert isinstance(b, MemorySink) and b.config.delay == 0.5
    assert p.sinks[0].sink.name == "first"
    assert p.settings.shutdown_timeout == 5 and p.settings.channel.max_batches == 2
    assert p.name == "renamed"


@pytest.mark.parametrize(("text", "value"), [
    ("10", 10), ("2.5", 2.5), ("true", True), ("x", "x"), ("", None), ("'10'", "10"), ("a: b", {"a": "b"}),
    ("[unclosed", "[unclosed"),
])
def test_values_are_parsed_as_yaml(text: str, value: object) -> None:
    assert parse_value(text) == value


@pytest.mark.parametrize(("override", "message"), [
    ("sources.0.x=1", "unknown path: sources is not in the file"),
    ("sinks.5.name=x", "unknown path: sinks has 2 items, no index 5"),
    ("sinks.name=x", "unknown path: sinks is a list"),
    ("name.first=x", "unknown path: name is a str, not a mapping or list"),
    ("source.nested.key=x", "unknown path: source.nested is not in the file"),
    ("novalue", "expected KEY.PATH=VALUE"),
    ("a..b=1", "expected KEY.PATH=VALUE"),
])
def test_unknown_paths_are_errors(cfg: Path, override: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        load_yaml(cfg, overrides=[override])
    assert str(info.value).startswith(f"{cfg}: --set {override}: ")
    assert message in str(info.value)


def test_invalid_overridden_values_name_the_override(cfg: Path) -> None:
    with pytest.raises(InvalidConfig) as info:
        load_yaml(cfg, overrides=["source.batch_size=lots", "source.batchsize=1"])
    lines = str(info.value).splitlines()
    assert f"{cfg}: --set source.batch_size=lots: source.batch_size — Input should be a valid integer, " \
        "unable to parse string as an integer (got 'lots')" in lines
    assert f"{cfg}: --set source.batchsize=1: source.batchsize — unknown key (did you mean 'batch_size'?)" \
        in lines


def test_overridden_values_are_interpolated(cfg: Path) -> None:
    p = load_yaml(cfg, overrides=["sinks.0.name=${SINK_NAME:-dflt}"], env={})
    assert p.sinks[0].sink.name == "dflt"
