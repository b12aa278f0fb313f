"""postgres source: read a table's new rows by an increasing column, its position checkpointed.

Each poll reads ``SELECT … WHERE column > position ORDER BY column LIMIT
batch_size``. A batch's ack carries the column value of its last row; once
every event of it is acknowledged (contract 2), the value is saved in a
checkpoint table of the same database (``streamflow_checkpoints`` by
default, one row per pipeline and source) and a restart resumes after it.

The column must increase in the order rows become visible: an identity or
sequence column with one writer, or a value set at commit time. Rows
committed later with a smaller value than one already read are not seen.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from pydantic import Field

from ..core.batch import Batch
from ..core.message import Message
from ..core.registry import SOURCES
from ..core.stage import Source, SourceConfig, StageContext
from .postgres import PostgresConnection, create_pool, quote_ident, table_columns

log = logging.getLogger("streamflow.connectors.postgres")


class PostgresSourceConfig(SourceConfig, PostgresConnection):
    table: str = Field(description="table to read (`schema.table` allowed)")
    column: str = Field(description="the increasing column rows are read in the order of (id, created_at …)")
    columns: list[str] | None = Field(None, description="columns of each event (default: all)")
    key: str | None = Field(None, description="column whose value becomes each event's key")
    mode: Literal["read", "follow"] = Field("follow", description="read: stop after the last row; follow: "
                                                                  "keep polling for new rows")
    batch_size: int = Field(1000, ge=1, description="rows per batch (and per query) at most")
    poll_interval: float = Field(1.0, gt=0, description="seconds between polls when no new rows were found")
    checkpoint_table: str = Field("streamflow_checkpoints", description="table of saved positions (created if "
                                                                        "missing)")
    checkpoint_id: str | None = Field(None, description="the row of this source in `checkpoint_table` "
                                                        "(default: `<pipeline>/<source name>`)")


@SOURCES.register("postgres")
class PostgresSource(Source[PostgresSourceConfig]):
    """Rows of a table, oldest first by ``column``, as mapping events; topic = table, offset = row count."""

    def setup(self) -> None:
        self._pool: Any = None
        self._position: str | None = None   # the column value (as text) of the last row read
        self._offset = 0
        self._query = ""
        self._checkpoint_id = self.config.checkpoint_id or self.name

    @property
    def ready(self) -> bool:
        return self._pool is not None

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        cfg = self.config
        if cfg.checkpoint_id is None:
            self._checkpoint_id = f"{ctx.pipeline}/{self.name}"
        self._pool = await create_pool(cfg)
        async with self._pool.acquire() as conn:
            types = {name: kind for name, kind, _ in await table_columns(conn, cfg.table)}
            if cfg.column not in types:
                raise ValueError(f"source {self.name!r}: table {cfg.table!r} has no column {cfg.column!r}")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(cfg.checkpoint_table)} "
                               "(id text PRIMARY KEY, position text NOT NULL, saved_at timestamptz NOT NULL)")
            self._position = await conn.fetchval(
                f"SELECT position FROM {quote_ident(cfg.checkpoint_table)} WHERE id = $1", self._checkpoint_id)
        if self._position is not None:
            log.info("postgres source %s: resuming %s after %s = %s", self.name, cfg.table, cfg.column,
                     self._position)
        selected = "*" if cfg.columns is None else ", ".join(map(quote_ident, cfg.columns))
        column, kind = quote_ident(cfg.column), types[cfg.column]
        self._query = (f"SELECT {selected}, {column}::text AS \"__position\" FROM {quote_ident(cfg.table)} "
                       f"WHERE $1::text IS NULL OR {column} > $1::text::{kind} ORDER BY {column} LIMIT $2")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def read(self) -> Batch | None:
        while True:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(self._query, self._position, self.config.batch_size)
            if rows:
                return self._batch(rows)
            if self.config.mode == "read":
                return None
            await asyncio.sleep(self.config.poll_interval)

    def _batch(self, rows: list[Any]) -> Batch:
        table, key = self.config.table, self.config.key
        messages = []
        for row in rows:
            value = dict(row)
            del value["__position"]
            messages.append(Message(value, None if key is None else value.get(key), None, None, table, 0,
                                    self._offset))
            self._offset += 1
        self._position = rows[-1]["__position"]
        return Batch(messages, [self.tracker.track(table, self._position)])

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        position = positions.get(self.config.table)
        if position is None:
            return
        async with self._pool.acquire() as conn:
            await conn.execute(
                f"INSERT INTO {quote_ident(self.config.checkpoint_table)} (id, position, saved_at) "
                "VALUES ($1, $2, now()) ON CONFLICT (id) DO UPDATE SET position = EXCLUDED.position, "
                "saved_at = EXCLUDED.saved_at", self._checkpoint_id, position)
