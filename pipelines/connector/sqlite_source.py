"""A SQLite table source: reads rows in insertion order and remembers how far it got."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import orjson
from pydantic import Field

from streamflow.api import SOURCES, Batch, Message, Source, SourceConfig, StageContext


class SqliteSourceConfig(SourceConfig):
    path: str = Field(description="database file")
    table: str = Field("events", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="table to read")
    batch_size: int = Field(500, ge=1, strict=True, description="rows per batch at most")
    follow: bool = Field(False, description="keep polling for new rows instead of ending at the last one")


@SOURCES.register("sqlite")
class SqliteSource(Source[SqliteSourceConfig]):
    """Rows of a SQLite table (its ``value`` column, JSON) in rowid order; the position is the rowid.

    The last acknowledged rowid is stored in the table ``streamflow_offsets``
    of the same database, so a restart resumes after it (at-least-once).
    """

    def setup(self) -> None:
        self.db: sqlite3.Connection | None = None
        self.last = 0  # the highest rowid read so far

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.db = sqlite3.connect(self.config.path, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS streamflow_offsets (source TEXT PRIMARY KEY, rowid INTEGER)")
        row = self.db.execute("SELECT rowid FROM streamflow_offsets WHERE source = ?", (self.name,)).fetchone()
        self.last = row[0] if row else 0

    async def read(self) -> Batch | None:
        while True:
            rows = await asyncio.to_thread(self._fetch)
            if rows:
                self.last = rows[-1][0]
                messages = [Message(orjson.loads(value), offset=rowid, topic=self.config.table, partition=0)
                            for rowid, value in rows]
                return Batch(messages, [self.tracker.track(0, self.last)])  # acked when every sink has it
            if not self.config.follow:
                return None
            await asyncio.sleep(1.0)

    def _fetch(self) -> list[Any]:
        assert self.db is not None
        return self.db.execute(f"SELECT rowid, value FROM {self.config.table} WHERE rowid > ? "
                               "ORDER BY rowid LIMIT ?", (self.last, self.config.batch_size)).fetchall()

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        assert self.db is not None
        with self.db:  # the released position, durably
            self.db.execute("INSERT OR REPLACE INTO streamflow_offsets VALUES (?, ?)", (self.name, positions[0]))

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()
