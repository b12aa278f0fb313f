"""A SQLite table sink: the connector that the README's "Writing a connector" builds."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import orjson
from pydantic import Field

from streamflow.api import SINKS, Batch, ComponentConfig, Sink, StageContext


class SqliteSinkConfig(ComponentConfig):
    path: str = Field(description="database file (created if missing)")
    table: str = Field("events", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                       description="table to append to (created if missing)")


@SINKS.register("sqlite")
class SqliteSink(Sink[SqliteSinkConfig]):
    """Appends each event to a SQLite table, one transaction per batch.

    A row is keyed by the event's source position, so a batch replayed after a
    crash (at-least-once) is not stored twice.
    """

    def setup(self) -> None:
        self.db: sqlite3.Connection | None = None
        self.insert = (f"INSERT OR IGNORE INTO {self.config.table} "
                       "(topic, partition, offset, key, value) VALUES (?, ?, ?, ?, ?)")

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.db = sqlite3.connect(self.config.path, check_same_thread=False)
        self.db.execute(f"CREATE TABLE IF NOT EXISTS {self.config.table} ("
                        "topic TEXT, partition INTEGER, offset INTEGER, key BLOB, value TEXT, "
                        "UNIQUE (topic, partition, offset))")

    async def write(self, batch: Batch) -> None:
        rows = [(m.topic, m.partition, m.offset, m.key, orjson.dumps(m.value).decode())
                for m in batch]
        await asyncio.to_thread(self._insert, rows)  # keep the event loop free meanwhile

    def _insert(self, rows: Sequence[tuple[object, ...]]) -> None:
        assert self.db is not None
        with self.db:  # one transaction: committed when this block ends, or rolled back
            self.db.executemany(self.insert, rows)

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()
