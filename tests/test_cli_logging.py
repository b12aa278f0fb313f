"""Logging: text and JSON formats, extra fields, and secrets from the environment redacted."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from pydantic import Field, SecretStr

from streamflow.cli import cli
from streamflow.config import load_yaml
from streamflow.core.registry import SINKS
from streamflow.core.stage import ComponentConfig, Sink
from streamflow.observability.logging import looks_secret, redact, register_secret, setup_logging


class SecretSinkConfig(ComponentConfig):
    url: str = Field("", description="where to connect")
    password: SecretStr | None = Field(None, description="the password")
    timeout: float = Field(1.0, description="seconds")


@SINKS.register("test_secret_sink")
class SecretSink(Sink):
    """A sink whose config holds a password."""

    Config = SecretSinkConfig

    async def write(self, batch: Any) -> None:
        pass


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def stderr():
    """A stream for the log handler; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(("name", "secret"), [
    ("DB_PASSWORD", True), ("api_token", True), ("AWS_SECRET_ACCESS_KEY", True), ("SASL_CREDENTIALS", True),
    ("KAFKA_KEY", True), ("HOST", False), ("PORT", False), ("USER", False),
])
def test_secret_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_redact_masks_only_secret_variables_values() -> None:
    register_secret("SF_TEST_ONE_PASSWORD", "correct-horse")
    register_secret("SF_TEST_ONE_HOST", "db.internal")
    register_secret("SF_TEST_ONE_TOKEN", "abc")  # too short to mask safely
    assert redact("login with correct-horse at db.internal") == "login with *** at db.internal"
    assert redact("abc") == "abc"


def test_json_format_one_object_per_line_with_extra_fields(stderr: io.StringIO) -> None:
    register_secret("SF_TEST_JSON_TOKEN", "tok-123456")
    setup_logging("json", "DEBUG", stderr)
    log = logging.getLogger("streamflow.test")
    log.info("hello %s", "world", extra={"pipeline": "p", "stage": "map", "partition": 3, "offset": 42})
    log.warning("token is %s", "tok-123456", extra={"stage": "secret tok-123456"})
    try:
        raise ValueError("bad tok-123456")
    except ValueError:
        log.exception("failed")
    records = [orjson.loads(line) for line in stderr.getvalue().splitlines()]
    assert len(records) == 3
    first, second, third = records
    assert first["message"] == "hello world" and first["level"] == "INFO" and first["logger"] == "streamflow.test"
    assert (first["pipeline"], first["stage"], first["partition"], first["offset"]) == ("p", "map", 3, 42)
    assert first["time"].endswith("+00:00")
    assert second["message"] == "token is ***" and second["stage"] == "secret ***"
    assert "ValueError: bad ***" in third["exc"]
    assert "tok-123456" not in stderr.getvalue()


def test_plain_text_format_when_not_a_terminal(stderr: io.StringIO) -> None:
    register_secret("SF_TEST_TEXT_SECRET", "s3cr3t-value")
    setup_logging("text", "INFO", stderr)
    logging.getLogger("streamflow.test").info("connecting with s3cr3t-value")
    logging.getLogger("streamflow.test").debug("not shown")
    out = stderr.getvalue()
    assert out.count("\n") == 1
    assert "INFO" in out and "streamflow.test: connecting with ***" in out and "s3cr3t-value" not in out


def test_rich_text_on_a_terminal(stderr: io.StringIO) -> None:
    tty = TtyStringIO()
    register_secret("SF_TEST_RICH_PASSWORD", "pa55word-rich")
    handler = setup_logging("text", "INFO", tty)
    assert type(handler).__name__ == "RichHandler"
    logging.getLogger("streamflow.test").warning("login pa55word-rich failed")
    assert "login *** failed" in tty.getvalue() and "pa55word-rich" not in tty.getvalue()


def test_setup_logging_replaces_its_own_handler(stderr: io.StringIO) -> None:
    setup_logging("json", stream=stderr)
    setup_logging("json", stream=stderr)
    assert sum(h.get_name() == "streamflow" for h in logging.getLogger().handlers) == 1
    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("xml")


def test_env_variable_selects_the_format(monkeypatch: pytest.MonkeyPatch, stderr: io.StringIO) -> None:
    monkeypatch.setenv("STREAMFLOW_LOG_FORMAT", "json")
    setup_logging(stream=stderr)
    logging.getLogger("streamflow.test").warning("x")
    assert orjson.loads(stderr.getvalue())["message"] == "x"


def test_secrets_from_yaml_are_secret_str_and_redacted(tmp_path: Path, stderr: io.StringIO,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_TEST_DB_PASSWORD", "yaml-hunter22")
    monkeypatch.setenv("SF_TEST_DB_HOST", "db.example")
    cfg = tmp_path / "p.yaml"
    cfg.write_text("""name: secret
source: {type: memory}
sink:
  type: test_secret_sink
  url: "postgres://${SF_TEST_DB_HOST}"
  password: ${SF_TEST_DB_PASSWORD}
""")
    pipeline = load_yaml(cfg)
    sink = pipeline.sinks[0].sink
    assert isinstance(sink.config, SecretSinkConfig) and sink.config.password is not None
    assert sink.config.password.get_secret_value() == "yaml-hunter22"
    assert "yaml-hunter22" not in repr(sink.config) and "yaml-hunter22" not in str(sink.config.model_dump())
    setup_logging("text", stream=stderr)
    logging.getLogger("streamflow.test").info("config: %s and password yaml-hunter22", sink.config.url)
    assert "postgres://db.example and password ***" in stderr.getvalue()


def test_config_errors_do_not_print_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_TEST_API_TOKEN", "tkn-not-a-number")
    cfg = tmp_path / "p.yaml"
    cfg.write_text("name: s\nsource: {type: memory}\nsink: {type: test_secret_sink, timeout: '${SF_TEST_API_TOKEN}'}\n")
    result = CliRunner().invoke(cli, ["validate", str(cfg)])
    assert result.exit_code == 2
    assert "sink.timeout — Input should be a valid number" in result.stderr
    assert "(got '***')" in result.stderr and "tkn-not-a-number" not in result.stderr
