"""``${VAR}`` interpolation: defaults, escapes, errors with the line of the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.config import InterpolationError, InvalidConfig, interpolate, load_yaml, loads_yaml
from streamflow.connectors.memory import MemorySource


@pytest.mark.parametrize(("text", "expected"), [
    ("plain", "plain"),
    ("${HOST}", "kafka:9092"),
    ("tcp://${HOST}/x", "tcp://kafka:9092/x"),
    ("${HOST}${PORT}", "kafka:90928080"),
    ("${MISSING:-fallback}", "fallback"),
    ("${MISSING:-}", ""),
    ("${EMPTY:-used when empty}", "used when empty"),
    ("${EMPTY}", ""),
    ("${HOST:-unused}", "kafka:9092"),
    ("$${HOST}", "${HOST}"),
    ("cost: $5 and $${literal} and ${PORT}", "cost: $5 and ${literal} and 8080"),
    ("$$${HOST}", "$${HOST}"),  # "$" then the escape "$${"
])
def test_interpolate(text: str, expected: str) -> None:
    env = {"HOST": "kafka:9092", "PORT": "8080", "EMPTY": ""}
    assert interpolate(text, env) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${NOPE}", "environment variable NOPE is not set"),
    ("a ${A} b ${B}", "environment variable B is not set"),
    ("${1BAD}", "invalid reference"),
    ("${}", "invalid reference"),
    ("x ${UNCLOSED", "unclosed '${'"),
])
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(InterpolationError, match=message.replace("$", r"\$").replace("{", r"\{")):
        interpolate(text, {"A": "a"})


def test_used_variables_are_recorded() -> None:
    used: dict[str, str] = {}
    interpolate("${A}-${B:-x}-${C:-y}", {"A": "1", "C": "3"}, used)
    assert used == {"A": "1", "C": "3"}


def test_every_string_scalar_is_interpolated_and_typed_by_the_schema(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("""name: ${NAME:-default-name}
settings:
  shutdown_timeout: ${TIMEOUT}
source:
  type: memory
  values: ["${HOST}", "$${HOST}", 3]
  batch_size: ${BATCH:-7}
sink: {type: memory, name: "out-${NAME:-x}"}
""")
    p = load_yaml(cfg, env={"HOST": "h1", "TIMEOUT": "2.5"})
    src = p.sources[0]
    assert isinstance(src, MemorySource)
    assert p.name == "default-name"
    assert p.settings.shutdown_timeout == 2.5
    assert src.config.values == ["h1", "${HOST}", 3]
    assert src.config.batch_size == 7
    assert p.sinks[0].sink.name == "out-x"


def test_undefined_variable_error_keeps_the_yaml_line(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("""name: demo
source:
  type: memory
  values: [ok, "${UNDEFINED_ONE}"]
sink:
  type: memory
  name: ${UNDEFINED_TWO}
""")
    with pytest.raises(InvalidConfig) as info:
        load_yaml(cfg, env={})
    assert str(info.value).splitlines() == [
        f"{cfg}:4:16: source.values[1] — environment variable UNDEFINED_ONE is not set "
        "(use ${UNDEFINED_ONE:-default} for a default)",
        f"{cfg}:7:9: sink.name — environment variable UNDEFINED_TWO is not set "
        "(use ${UNDEFINED_TWO:-default} for a default)",
    ]


def test_interpolated_value_errors_point_at_the_original_line(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text("name: demo\nsource: {type: memory}\nsink:\n  type: memory\n  delay: ${DELAY}\n")
    with pytest.raises(InvalidConfig) as info:
        load_yaml(cfg, env={"DELAY": "slow"})
    assert str(info.value).startswith(f"{cfg}:5:10: sink.delay — Input should be a valid number")


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_TEST_PIPELINE_NAME", "from-env")
    p = loads_yaml("name: ${SF_TEST_PIPELINE_NAME}\nsource: {type: memory}\nsink: {type: memory}\n")
    assert p.name == "from-env"


def test_keys_are_not_interpolated() -> None:
    with pytest.raises(InvalidConfig, match=r"\$\{KEY\} — unknown key"):
        loads_yaml("name: x\nsource: {type: memory}\nsink: {type: memory}\n${KEY}: 1\n", env={"KEY": "name"})
