"""The operations server over TLS and mutual TLS, with certificates generated for the test."""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiohttp
import pytest
from tls_certs import Certs, make_certs

from streamflow import Pipeline
from streamflow.cli import _http_watchers
from streamflow.config.loader import loads_yaml
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import Runner
from streamflow.observability.server import OpsServer
from streamflow.security.tls import ServerTls


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def runner() -> Runner:
    return Runner(Pipeline("ops").source(MemorySource(values=[])).sink(MemorySink()), handle_signals=False)


async def healthz(port: int, ctx: ssl.SSLContext | bool, scheme: str = "https") -> int:
    async with aiohttp.ClientSession() as session, session.get(
            f"{scheme}://127.0.0.1:{port}/healthz", ssl=ctx) as resp:
        return resp.status


async def test_metrics_server_over_tls(certs: Certs) -> None:
    tls = ServerTls(certfile=str(certs.server), keyfile=str(certs.server_key))
    async with OpsServer(runner(), port=0, tls=tls) as server:
        assert server.port is not None
        assert await healthz(server.port, certs.client_context(with_cert=False)) == 200
        with pytest.raises(aiohttp.ClientError):
            await healthz(server.port, False, scheme="http")


async def test_metrics_server_with_mutual_tls_refuses_clients_without_a_certificate(certs: Certs) -> None:
    tls = ServerTls(certfile=str(certs.server), keyfile=str(certs.server_key), client_cafile=str(certs.ca))
    async with OpsServer(runner(), port=0, tls=tls) as server:
        assert server.port is not None
        with pytest.raises(aiohttp.ClientError):
            await healthz(server.port, certs.client_context(with_cert=False))
        assert await healthz(server.port, certs.client_context()) == 200


async def test_yaml_settings_reach_the_server(certs: Certs) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = f"""
name: ops
settings:
  http:
    port: {port}
    tls: {{certfile: {certs.server}, keyfile: {certs.server_key}, client_cafile: {certs.ca}}}
source: {{type: generator, count: 1}}
sinks: [{{type: stdout}}]
"""
    pipeline = loads_yaml(text)
    [watcher] = _http_watchers(pipeline)
    task = asyncio.create_task(watcher(Runner(pipeline, handle_signals=False)))
    try:
        for _ in range(500):
            try:
                assert await healthz(port, certs.client_context()) == 200
                break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("the server never answered")
        with pytest.raises(aiohttp.ClientError):
            await healthz(port, certs.client_context(with_cert=False))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
