"""enrich's ``postgres`` lookup: a row per key from a table, the keys of concurrent lookups in one query.

Each lookup of a key joins the keys asked for in the same turn of the event
loop — with enrich's ``concurrency``, those of a batch's events in flight —
and one query fetches them all: ``SELECT … WHERE key_column = ANY($1)``
(a statement asyncpg prepares once per connection). enrich's ``cache`` and
single-flight sit in front of it, as for ``fn`` and ``url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from pydantic import Field

from .postgres import PostgresConnection, create_pool, quote_ident, table_columns

#: Column types whose keys are sent as int (event fields are often numbers as strings, or the reverse).
INTEGER_TYPES = ("smallint", "integer", "bigint")


class PostgresLookupConfig(PostgresConnection):
    """enrich's ``postgres`` key: the table looked up and how."""

    table: str = Field(description="table (or view) to look keys up in")
    key_column: str = Field(description="column matched against the event's `key` (indexed, ideally unique)")
    columns: list[str] | None = Field(None, description="columns returned (default: all but `key_column`)")
    max_keys: int = Field(1000, ge=1, description="keys per query at most")


class PostgresLookup:
    """``await lookup(key)``: the row of ``key`` as a dict (without the key column), or None."""

    def __init__(self, config: PostgresLookupConfig) -> None:
        self.config = config
        self._pool: Any = None
        self._sql = ""
        self._as_int = False
        self._waiting: dict[Hashable, asyncio.Future[dict[str, Any] | None]] = {}
        self._flushing: asyncio.Handle | None = None
        self._queries: set[asyncio.Task[None]] = set()
        #: Queries sent (what batching saves).
        self.queries = 0

    async def open(self) -> None:
        cfg = self.config
        self._pool = await create_pool(cfg)
        async with self._pool.acquire() as conn:
            types = {name: kind for name, kind, _ in await table_columns(conn, cfg.table)}
        if cfg.key_column not in types:
            raise ValueError(f"table {cfg.table!r} has no column {cfg.key_column!r}")
        self._as_int = types[cfg.key_column] in INTEGER_TYPES
        columns = cfg.columns or [c for c in types if c != cfg.key_column]
        selected = ", ".join(map(quote_ident, [cfg.key_column, *columns]))
        self._columns = columns
        self._sql = (f"SELECT {selected} FROM {quote_ident(cfg.table)} "
                     f"WHERE {quote_ident(cfg.key_column)} = ANY($1::{types[cfg.key_column]}[])")

    async def close(self) -> None:
        for task in self._queries:
            task.cancel()
        await asyncio.gather(*self._queries, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _key(self, key: Any) -> Hashable:
        """The key as the key column takes it (int columns: int; others: as given)."""
        if self._as_int and not isinstance(key, int):
            return int(key)
        if not self._as_int and isinstance(key, (int, float)) and not isinstance(key, bool):
            return str(key)
        return key  # type: ignore[no-any-return]

    async def __call__(self, key: Any) -> dict[str, Any] | None:
        sent = self._key(key)
        waiting = self._waiting.get(sent)
        if waiting is None:
            waiting = self._waiting[sent] = asyncio.get_running_loop().create_future()
            if self._flushing is None:
                self._flushing = asyncio.get_running_loop().call_soon(self._flush)
        return await asyncio.shield(waiting)

    def _flush(self) -> None:
        """Send the keys asked for so far, ``max_keys`` per query."""
        self._flushing = None
        waiting, self._waiting = self._waiting, {}
        keys = list(waiting)
        size = self.config.max_keys
        for start in range(0, len(keys), size):
            chunk = {k: waiting[k] for k in keys[start:start + size]}
            task = asyncio.create_task(self._query(chunk))
            self._queries.add(task)
            task.add_done_callback(self._queries.discard)

    async def _query(self, chunk: dict[Hashable, asyncio.Future[dict[str, Any] | None]]) -> None:
        try:
            self.queries += 1
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(self._sql, list(chunk))
        except asyncio.CancelledError:
            for fut in chunk.values():
                fut.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - each waiting lookup raises it (to enrich's on_error)
            for fut in chunk.values():
                if not fut.done():
                    fut.set_exception(exc)
            return
        key_column = self.config.key_column
        found = {row[key_column]: {c: row[c] for c in self._columns} for row in rows}
        for key, fut in chunk.items():
            if not fut.done():
                fut.set_result(found.get(key))
