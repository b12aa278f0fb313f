"""Kafka over TLS against real TLS listeners of a test broker, with certificates generated in the test:
SSL with client certificates (mutual TLS), SASL_SSL with SCRAM, and the failures a wrong setup gives."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import JAAS_SCRAM, KafkaEnv, harness
from tls_certs import Certs, make_certs

from streamflow import Pipeline
from streamflow.core.runner import Runner

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaEnv, Certs, str, str]]:
    """A broker with PLAINTEXT (admin), SSL requiring client certificates, and SASL_SSL (SCRAM-SHA-512,
    user carol). Yields (admin env, certs, SSL bootstrap, SASL_SSL bootstrap)."""
    if harness.external_bootstrap():
        pytest.skip("needs its own TLS broker; STREAMFLOW_TEST_BOOTSTRAP points at an external one")
    certs = make_certs(tmp_path_factory.mktemp("kafka-tls"))
    keystore = certs.server.parent / "broker-keystore.pem"  # PEM keystore: PKCS#8 key, then the chain
    keystore.write_text(certs.server_key.read_text() + certs.server.read_text())
    host = "127.0.0.1"
    port, controller = harness.free_port(host), harness.free_port(host)
    ssl_port, sasl_port = harness.free_port(host), harness.free_port(host)
    config = {
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller},SSL://{host}:{ssl_port},"
                     f"SASL_SSL://{host}:{sasl_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},SSL://{host}:{ssl_port},SASL_SSL://{host}:{sasl_port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "listener.name.sasl_ssl.ssl.client.auth": "none",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": JAAS_SCRAM,
    }
    with harness.KafkaBroker(port=port, controller_port=controller, config=config) as broker:
        scram_user = "SCRAM-SHA-512=[iterations=4096,password=carol-secret]"
        broker.run_tool("kafka.admin.ConfigCommand", "--bootstrap-server", broker.bootstrap, "--alter",
                        "--add-config", scram_user, "--entity-type", "users", "--entity-name", "carol")
        yield KafkaEnv(broker.bootstrap, broker), certs, f"{host}:{ssl_port}", f"{host}:{sasl_port}"


def mtls(certs: Certs, bootstrap: str) -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap, "security_protocol": "SSL", "ssl_cafile": str(certs.ca),
            "ssl_certfile": str(certs.client), "ssl_keyfile": str(certs.client_key)}


async def run_until(admin: KafkaEnv, pipeline: Pipeline, out: str, n: int) -> list[Any]:
    runner = Runner(pipeline, handle_signals=False)
    task = asyncio.create_task(runner.run())
    try:
        records = await admin.consume(out, lambda r: len(r) >= n, timeout=60, what="output over TLS")
    finally:
        runner.stop()
        result = await asyncio.wait_for(task, 60)
    assert result.exit_code == 0, result.summary()
    return sorted(orjson.loads(r.value)["id"] for r in records)


async def test_mutual_tls_source_and_sink(tls_kafka: tuple[KafkaEnv, Certs, str, str]) -> None:
    admin, certs, ssl_bootstrap, _ = tls_kafka
    src, out = await admin.topic("tls-in"), await admin.topic("tls-out")
    await admin.produce(src, [(None, {"id": i}, i % 3) for i in range(200)])
    pipeline = (Pipeline("mtls", commit_interval=0.2)
                .source("kafka", topics=[src], group_id=f"g-{src}", **mtls(certs, ssl_bootstrap))
                .sink("kafka", topic=out, **mtls(certs, ssl_bootstrap)))
    assert await run_until(admin, pipeline, out, 200) == list(range(200))


async def test_sasl_ssl_with_scram(tls_kafka: tuple[KafkaEnv, Certs, str, str]) -> None:
    admin, certs, _, sasl_bootstrap = tls_kafka
    out = await admin.topic("scram-out")
    pipeline = (Pipeline("scram")
                .source("generator", count=50)
                .sink("kafka", topic=out, bootstrap_servers=sasl_bootstrap, security_protocol="SASL_SSL",
                      ssl_cafile=str(certs.ca), sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="carol",
                      sasl_plain_password="carol-secret"))
    assert len(await run_until(admin, pipeline, out, 50)) == 50


@pytest.mark.parametrize("wrong", ["no client certificate", "untrusted broker"])
async def test_a_wrong_tls_setup_fails_the_run_within_connect_timeout(
        tls_kafka: tuple[KafkaEnv, Certs, str, str], tmp_path: Path, wrong: str) -> None:
    admin, certs, ssl_bootstrap, _ = tls_kafka
    options = mtls(certs, ssl_bootstrap)
    if wrong == "no client certificate":
        del options["ssl_certfile"], options["ssl_keyfile"]
    else:
        options["ssl_cafile"] = str(make_certs(tmp_path / "other").ca)
    pipeline = (Pipeline("tls-bad")
                .source("kafka", topics=["never"], group_id="g", connect_timeout=3, **options)
                .sink("memory"))
    result = await asyncio.wait_for(Runner(pipeline, handle_signals=False).run(), 60)
    assert result.exit_code == 1
    assert "cannot connect to Kafka" in result.summary() and "within 3s" in result.summary()
