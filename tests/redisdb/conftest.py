"""Fixtures of the tests in this directory: a real redis-server per module, and a client of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio

from .server import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server of this test module (with a password)."""
    server = RedisServer(password=True).start()
    yield server
    server.stop()


@pytest.fixture
async def r(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A client of it (bytes in, bytes out), the database emptied first."""
    client = redis.asyncio.Redis.from_url(redis_server.url, password=redis_server.password, protocol=2)
    await client.flushall()
    await client.config_resetstat()
    yield client
    await client.aclose()
