"""Kafka connection/security settings: validation, secrets, and SASL against a real broker."""

from __future__ import annotations

import asyncio
import logging
import ssl

import orjson
import pytest
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.config.loader import loads_yaml
from streamflow.connectors.kafka import KafkaSink, KafkaSource, sink_config
from streamflow.core.errors import ConfigError
from streamflow.core.runner import Runner

SASL = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username="alice",
            sasl_plain_password="alice-secret")


# -- validation (no broker) ----------------------------------------------------------
def test_secrets_never_show_in_repr_dump_or_logs(caplog):
    src = KafkaSource(topics=["t"], group_id="g", **SASL)
    assert "alice-secret" not in repr(src.config)
    assert "alice-secret" not in src.config.model_dump_json()
    assert "alice-secret" not in str(src.config.model_dump())
    options = src.config.client_options("client")
    assert options["sasl_plain_password"] == "alice-secret"  # handed to aiokafka only
    assert options["sasl_mechanism"] == "PLAIN" and options["security_protocol"] == "SASL_PLAINTEXT"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("config: %s", src.config)
    assert "alice-secret" not in caplog.text


def test_config_errors_do_not_echo_the_password():
    with pytest.raises(ValidationError) as info:
        KafkaSource(topics=["t"], group_id="g", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                    sasl_plain_password="alice-secret")
    assert "needs sasl_plain_username" in str(info.value)
    assert "alice-secret" not in str(info.value)


@pytest.mark.parametrize("options, message", [
    ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism, sasl_plain_username, sasl_plain_password"),
    ({"sasl_mechanism": "PLAIN"}, "need security_protocol SASL_PLAINTEXT or SASL_SSL"),
    ({"ssl_cafile": "/ca.pem"}, "need security_protocol SSL or SASL_SSL"),
    ({"security_protocol": "SSL", "ssl_keyfile": "k.pem"}, "need ssl_certfile"),
    ({"sasl_mechanism": "GSSAPI"}, "PLAIN"),
    ({"bootstrap_servers": "nohost"}, "expected host:port"),
    ({"bootstrap_servers": ""}, "at least one host:port"),
])
def test_bad_security_settings_are_config_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        KafkaSource(topics=["t"], group_id="g", **options)


def test_ssl_context_is_built_from_the_settings():
    src = KafkaSource(topics=["t"], group_id="g", security_protocol="SSL", ssl_check_hostname=False)
    ctx = src.config.client_options("c")["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.check_hostname is False and ctx.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(FileNotFoundError):
        KafkaSource(topics=["t"], group_id="g", security_protocol="SSL",
                    ssl_cafile="/nonexistent/ca.pem").config.client_options("c")


def test_bootstrap_list_and_settings_shared_by_source_and_sink():
    sink = KafkaSink(topic="out", bootstrap_servers=["a:9092", " b:9093"], **SASL)
    assert sink.config.bootstrap_servers == "a:9092,b:9093"
    assert sink.config.client_options("c")["sasl_plain_username"] == "alice"


@pytest.mark.parametrize("options, message", [
    ({}, "exactly one of `topics`"),
    ({"topics": ["a"], "pattern": "a.*"}, "exactly one of `topics`"),
    ({"topics": ["a"], "codec": "nope"}, "unknown codec type 'nope'"),
    ({"topics": ["a"], "revoke_timeout": 90}, "revoke_timeout must be shorter"),
    ({"topics": ["a"], "unknown_key": 1}, "unknown_key — unknown key"),
])
def test_source_config_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        KafkaSource(group_id="g", **options)


@pytest.mark.parametrize("options, message", [
    ({}, "exactly one of `topic`, `topic_field` or `topic_fn`"),
    ({"topic": "a", "topic_field": "t"}, "exactly one of `topic`"),
    ({"topic": "a", "key_field": "k", "key_fn": "builtins:str"}, "at most one of `key_field`"),
    ({"topic": "a", "acks": 1}, "enable_idempotence needs acks: all"),
    ({"topic": "a", "compression_type": "brotli"}, "compression_type"),
    ({"topic": "a", "topic_fn": "os.path:nope"}, "has no attribute"),
    ({"topic": "a", "retry_backoff": 0.5}, "`retry_backoff` was removed: the Kafka sink retries with the "
                                          r"pipeline's `settings.sink_retry` \(backoff, max_backoff"),
    ({"topic": "a", "max_retry_backoff": 9}, "`max_retry_backoff` was removed: .* `settings.sink_retry`"),
])
def test_sink_config_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        KafkaSink(**options)


def test_removed_retry_keys_name_the_file_line_and_what_to_write_instead():
    text = "name: p\nsource: {type: generator}\nsink:\n  type: kafka\n  topic: out\n  retry_backoff: 0.5\n"
    with pytest.raises(ConfigError, match=r"pipeline.yaml:4:3: sink — `retry_backoff` was removed: .*"
                                          r"`settings.sink_retry` \(backoff, max_backoff, max_attempts\)"):
        loads_yaml(text, "pipeline.yaml")
    fixed = text.replace("  retry_backoff: 0.5\n", "") + "settings:\n  sink_retry: {backoff: 0.5}\n"
    assert loads_yaml(fixed, "pipeline.yaml").settings.sink_retry.backoff == 0.5


def test_compression_needs_its_codec(monkeypatch):
    monkeypatch.setitem(sink_config._COMPRESSION_AVAILABLE, "zstd", lambda: False)
    with pytest.raises(ValidationError, match="compression_type 'zstd' needs the cramjam package"):
        KafkaSink(topic="a", compression_type="zstd")
    monkeypatch.setitem(sink_config._COMPRESSION_AVAILABLE, "zstd", lambda: True)
    assert KafkaSink(topic="a", compression_type="zstd").config.compression_type == "zstd"
    assert KafkaSink(topic="a", compression_type="gzip").config.compression_type == "gzip"


# -- SASL against a real broker (the `sasl_kafka` fixture) ------------------------------
@pytest.mark.kafka
async def test_sasl_plain_source_and_scram_sink(sasl_kafka):
    admin, sasl_bootstrap = sasl_kafka
    src, out = await admin.topic("sasl-in"), await admin.topic("sasl-out")
    await admin.produce(src, [(None, {"id": i}, i % 3) for i in range(300)])
    pipeline = (Pipeline("sasl", commit_interval=0.2)
                .source("kafka", bootstrap_servers=sasl_bootstrap, topics=[src], group_id=f"g-{src}", **SASL)
                .sink("kafka", bootstrap_servers=sasl_bootstrap, topic=out, security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="bob",
                      sasl_plain_password="bob-secret"))
    runner = Runner(pipeline, handle_signals=False)
    task = asyncio.create_task(runner.run())
    try:
        records = await admin.consume(out, lambda r: len(r) >= 300, timeout=60, what="output over SASL")
    finally:
        runner.stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0, result.summary()
    assert sorted(orjson.loads(r.value)["id"] for r in records) == list(range(300))


@pytest.mark.kafka
async def test_wrong_sasl_password_fails_the_run(sasl_kafka, caplog):
    admin, sasl_bootstrap = sasl_kafka
    src = await admin.topic("sasl-bad")
    bad = {**SASL, "sasl_plain_password": "wrong-password"}
    pipeline = (Pipeline("sasl-bad")
                .source("kafka", bootstrap_servers=sasl_bootstrap, topics=[src], group_id="g", connect_timeout=2,
                        **bad)
                .sink("memory"))
    result = await asyncio.wait_for(Runner(pipeline, handle_signals=False).run(), 60)
    assert result.exit_code == 1
    assert "wrong-password" not in caplog.text and "wrong-password" not in result.summary()
