"""The Redis connectors over TLS (rediss://) to a real redis-server with mutual TLS; secrets are masked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streamflow.connectors.redis import RedisConnection, connect
from streamflow.connectors.redis_sink import RedisSink
from streamflow.security.secrets import secret_values
from tests.tls_certs import Certs, make_certs

from .helpers import run
from .server import RedisServer


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certs) -> Iterator[RedisServer]:
    server = RedisServer(password=True, tls=(certs.server, certs.server_key, certs.ca)).start()
    yield server
    server.stop()


def tls_sink(server: RedisServer, **options: Any) -> RedisSink:
    return RedisSink(url=server.url, password=server.password, key="k:{id}", **options)


async def test_mutual_tls(tls_server: RedisServer, certs: Certs) -> None:
    client_cert = {"cert_file": str(certs.client), "key_file": str(certs.client_key)}
    out = tls_sink(tls_server, ca_file=str(certs.ca), **client_cert)
    await run([{"id": i} for i in range(5)], sink=out)
    await run([{"id": 9}], sink=tls_sink(tls_server, verify=False, **client_cert))   # any server certificate
    assert out.round_trips == 1
    # no client certificate: the server ends the handshake; no CA: the server's certificate is not trusted
    login = {"url": tls_server.url, "password": tls_server.password}
    with pytest.raises(RedisConnectionError, match="certificate required|reset by peer"):  # TLS 1.3: either
        await connect(RedisConnection(**login, ca_file=str(certs.ca)))
    with pytest.raises(RedisConnectionError, match="certificate verify failed"):
        await connect(RedisConnection(**login, **client_cert))


def test_password_and_url_are_secrets() -> None:
    sink = RedisSink(url="redis://:url-s3cret@h:6379/0", password="pw-s3cret", key="k")
    assert set(secret_values(sink.config)) == {"redis://:url-s3cret@h:6379/0", "pw-s3cret"}
    assert "s3cret" not in repr(sink.config)
