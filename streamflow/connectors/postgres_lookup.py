"""enrich's ``postgres`` lookup: the rows of a batch's keys from a table, in one query.

A `BatchLookup` (cache, single-flight and errors are its): the keys of a
batch are fetched by one ``SELECT … WHERE key_column = ANY($1)`` (``max_keys``
per query; a statement asyncpg prepares once per connection), a key converted
to what the key column takes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pydantic import Field

from ..transforms.batch_lookup import LOOKUPS, BatchLookup, Row
from .postgres import PostgresConnection, create_pool, quote_ident, table_columns

#: Column types whose keys are sent as int (event fields are often numbers as strings, or the reverse).
INTEGER_TYPES = ("smallint", "integer", "bigint")


class PostgresLookupConfig(PostgresConnection):
    """enrich's ``postgres`` key: the table looked up and how."""

    table: str = Field(description="table (or view) to look keys up in")
    key_column: str = Field(description="column matched against the event's `key` (indexed, ideally unique)")
    columns: list[str] | None = Field(None, description="columns returned (default: all but `key_column`)")
    max_keys: int = Field(1000, ge=1, description="keys per query at most")


@LOOKUPS.register("postgres")
class PostgresLookup(BatchLookup):
    """Rows of a table by key, for enrich (`enrich` per batch)."""

    config: PostgresLookupConfig

    def __init__(self, config: PostgresLookupConfig) -> None:
        super().__init__(config)
        self._pool: Any = None
        self._sql = ""
        self._as_int = False
        self._columns: list[str] = []

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
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def store_key(self, key: Any) -> Hashable:
        """The key as the key column takes it (int columns: int; others: numbers as text)."""
        if self._as_int and not isinstance(key, int):
            return int(key)
        if not self._as_int and isinstance(key, (int, float)) and not isinstance(key, bool):
            return str(key)
        return key  # type: ignore[no-any-return]

    async def fetch(self, keys: list[Hashable]) -> dict[Hashable, Row]:
        """Key -> row (without the key column) of those of ``keys`` the table has."""
        found: dict[Hashable, Row] = {}
        key_column, columns, size = self.config.key_column, self._columns, self.config.max_keys
        for start in range(0, len(keys), size):
            self.queries += 1
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(self._sql, keys[start:start + size])
            for row in rows:
                found[row[key_column]] = {c: row[c] for c in columns}
        return found
