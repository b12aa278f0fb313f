"""Secret-typed config values are masked in logs, summaries and dead-letter records, whatever the
environment variable they came from is called."""

from __future__ import annotations

import io
import logging
import os
from typing import Any

import pytest

from streamflow import Pipeline
from streamflow.config.loader import loads_yaml
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.observability.logging import redact, setup_logging
from streamflow.security.secrets import secret_values

TOKEN = "tok-5f1e9b2c-not-for-logs"


def leaky(value: Any) -> Any:
    """A user function whose error message quotes the credential it used."""
    raise RuntimeError(f"upstream refused key {os.environ['UPSTREAM_AUTH']} for {value}")


def test_secret_values_are_found_by_type_in_nested_configs() -> None:
    pipeline = loads_yaml(f"""
name: p
source: {{type: http, port: 0, auth_token: a-token, signature: {{secret: {TOKEN}}}}}
stages:
  - {{type: enrich, url: "http://127.0.0.1:1/x/{{key}}", key: id, headers: {{X-Api-Key: header-key}}}}
sinks: [{{type: stdout}}]
""")
    found = {v for stage in pipeline.stages() for v in secret_values(stage.config)}
    assert found == {"a-token", TOKEN, "header-key"}


async def test_a_secret_from_any_env_variable_is_masked_in_logs_and_dead_letters(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_AUTH", TOKEN)  # the name does not look secret: the field type does
    out, dlq = MemorySink(name="out"), MemorySink(name="dlq")
    pipeline = (Pipeline("secrets").source(MemorySource(values=[{"id": 1}, {"id": 2}]))
                .map(leaky, on_error="dead_letter")
                .enrich(url="http://127.0.0.1:1/x/{key}", key="id", headers={"X-Api-Key": TOKEN})
                .sink(out).dead_letter(dlq))
    logs = io.StringIO()
    handler = setup_logging("json", "INFO", logs)
    try:
        result = await Runner(pipeline, handle_signals=False).run()
    finally:
        logging.getLogger().removeHandler(handler)
    assert result.exit_code == EXIT_OK and out.values == []
    assert [d["error"] for d in dlq.values] == [f"RuntimeError: upstream refused key *** for {{'id': {i}}}"
                                                for i in (1, 2)]
    assert TOKEN not in logs.getvalue() and "refused key ***" in logs.getvalue()
    assert redact(f"x {TOKEN} y") == "x *** y"


def test_a_secret_reference_is_masked_whatever_the_variable_is_called(tmp_path: Any) -> None:
    """``${secret:HOOK}`` marks the value as secret although HOOK says nothing of it: a config error
    that quotes it, `graph` and the logs show ``***``; a plain ``${HOOK}`` would not be masked."""
    from click.testing import CliRunner

    from streamflow.cli import cli

    value = "hook-83be1c0d-value"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: p\nsource: {type: generator, count: '${secret:HOOK}'}\nsinks: [{type: stdout}]\n")
    result = CliRunner().invoke(cli, ["validate", str(bad)], env={"HOOK": value})
    assert result.exit_code == 2 and value not in result.output and "***" in result.output
    good = tmp_path / "good.yaml"
    good.write_text("name: p\nsource: {type: generator, count: 1}\n"
                    "sinks: [{type: stdout, name: 'out-${secret:HOOK}'}]\n")
    result = CliRunner().invoke(cli, ["graph", str(good)], env={"HOOK": value})
    assert result.exit_code == 0 and value not in result.output and "out-***" in result.output
    assert redact(f"then {value} leaked") == "then *** leaked"


async def test_a_secret_in_a_metric_label_is_masked_on_the_metrics_endpoint() -> None:
    import aiohttp

    from streamflow.observability.logging import register_secret
    from streamflow.observability.server import OpsServer

    register_secret("secret:NAME", "label-5a1c-secret")
    runner = Runner(Pipeline("p").source(MemorySource(values=[1])).sink(MemorySink(name="out-label-5a1c-secret")),
                    handle_signals=False)
    async with OpsServer(runner, "127.0.0.1", 0) as server, aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
        text = await resp.text()
    assert "label-5a1c-secret" not in text and 'channel="->out-***"' in text
