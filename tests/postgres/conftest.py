"""Fixtures of the tests in this directory: a real PostgreSQL server per module, and a connection to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from .server import PASSWORD, PostgresServer


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server of this test module."""
    pg = PostgresServer().start()
    yield pg
    pg.stop()


@pytest.fixture
async def db(postgres: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    """A connection to it, as the superuser."""
    conn = await asyncpg.connect(postgres.dsn, password=PASSWORD)
    yield conn
    await conn.close()
