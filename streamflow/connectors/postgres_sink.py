"""postgres sink: write each batch to a table in one transaction — upsert, insert or COPY.

The batch is acknowledged only after its transaction commits (contract 2).
``upsert`` (with ``key``) is ``INSERT … ON CONFLICT (key) DO UPDATE``, one
prepared statement executed for every row in order, so a later event of a
key wins; ``insert`` is a plain INSERT; ``copy`` uses the COPY protocol
(fastest, insert only). A lost connection, a deadlock or a server shutting
down is retried with the pipeline's ``sink_retry`` backoff, holding the
source back. A row the database refuses (bad value, constraint violation)
is found by writing the batch again row by row under savepoints; the others
are committed and each refused row goes to ``on_error``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from ..core.backoff import Backoff
from ..core.batch import Batch
from ..core.errors import ErrorHandler, ErrorPolicy, PipelineFailed
from ..core.message import Message
from ..core.registry import SINKS
from ..core.stage import ComponentConfig, Sink, StageContext
from .postgres import PostgresConnection, create_pool, is_refused, is_transient, quote_ident, table_columns

log = logging.getLogger("streamflow.connectors.postgres")

Row = tuple[Any, ...]


class PostgresSinkConfig(ComponentConfig, PostgresConnection):
    table: str = Field(description="table to write (`schema.table` allowed)")
    columns: list[str] | None = Field(None, description="columns written, from the event fields of the same "
                                                        "name (default: every column but identity and "
                                                        "generated ones; a missing field is NULL)")
    mode: Literal["upsert", "insert", "copy"] = Field(
        "upsert", description="upsert: INSERT … ON CONFLICT (key) DO UPDATE; insert: plain INSERT; copy: the "
                              "COPY protocol (insert only, fastest)")
    key: list[str] | None = Field(None, description="the conflict columns of `upsert` (a unique index)")
    on_error: ErrorPolicy = Field(default_factory=ErrorPolicy,
                                  description="what to do with an event whose row the database refuses")

    @model_validator(mode="after")
    def _check(self) -> PostgresSinkConfig:
        if (self.mode == "upsert") != bool(self.key):
            raise ValueError("mode: upsert needs `key` (the conflict columns), and `key` applies to upsert only")
        if self.key and self.columns is not None and not set(self.key) <= set(self.columns):
            raise ValueError("`key` columns must be among `columns`")
        return self


def _timestamp(value: Any) -> Any:
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return value


def _naive_timestamp(value: Any) -> Any:
    value = _timestamp(value)
    return value.replace(tzinfo=None) if isinstance(value, dt.datetime) else value


#: Column type -> conversion of a JSON-ish event value into what asyncpg takes for it.
CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "timestamp with time zone": _timestamp,
    "timestamp without time zone": _naive_timestamp,
    "date": lambda v: dt.date.fromisoformat(v) if isinstance(v, str) else v,
    "numeric": lambda v: Decimal(str(v)) if isinstance(v, (int, float, str)) and not isinstance(v, bool) else v,
}


@SINKS.register("postgres")
class PostgresSink(Sink[PostgresSinkConfig]):
    """Writes each batch's events (mappings) as rows of a table, one transaction per batch."""

    def setup(self) -> None:
        self._pool: Any = None
        self._columns: list[str] = []
        self._convert: list[tuple[int, Callable[[Any], Any]]] = []
        self._sql = ""
        self._retry = Backoff()
        self.errors = ErrorHandler(self.name, self.config.on_error)
        #: Transactions committed (what the tests and benchmarks look at).
        self.commits = 0

    @property
    def ready(self) -> bool:
        return self._pool is not None

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        if ctx.settings is not None:
            self._retry = ctx.settings.sink_retry
        self.errors = ctx.error_handler(self.config.on_error)
        self._pool = await create_pool(self.config)
        async with self._pool.acquire() as conn:
            described = await table_columns(conn, self.config.table)
        self._plan(described)

    def _plan(self, described: list[tuple[str, str, bool]]) -> None:
        """The columns written, their value conversions and the INSERT statement."""
        cfg = self.config
        types = {name: kind for name, kind, _ in described}
        columns = cfg.columns or [name for name, _, generated in described if not generated]
        unknown = [c for c in columns if c not in types]
        if unknown:
            raise ValueError(f"sink {self.name!r}: table {cfg.table!r} has no column {', '.join(unknown)}")
        self._columns = columns
        self._convert = [(i, CONVERSIONS[types[c]]) for i, c in enumerate(columns) if types[c] in CONVERSIONS]
        names = ", ".join(map(quote_ident, columns))
        params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        self._sql = f"INSERT INTO {quote_ident(cfg.table)} ({names}) VALUES ({params})"
        if cfg.mode == "upsert" and cfg.key:
            updates = [c for c in columns if c not in cfg.key]
            action = ("DO UPDATE SET " + ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in updates)
                      if updates else "DO NOTHING")
            self._sql += f" ON CONFLICT ({', '.join(map(quote_ident, cfg.key))}) {action}"

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- writing -------------------------------------------------------------------------
    def _row(self, value: Any) -> Row:
        if not isinstance(value, Mapping):
            raise TypeError(f"the postgres sink writes mappings, got {type(value).__name__}")
        row = [value.get(c) for c in self._columns]
        for i, convert in self._convert:
            if row[i] is not None:
                row[i] = convert(row[i])
        return tuple(row)

    async def write(self, batch: Batch) -> None:
        rows: list[tuple[Message, Row]] = []
        failed: list[tuple[Message, Exception]] = []
        for m in batch.messages:
            try:
                rows.append((m, self._row(m.value)))
            except (TypeError, ValueError) as exc:
                failed.append((m, exc))
        if rows:
            failed += await self._commit_retrying(rows)
        for m, error in failed:  # after the commit: the good rows are in whatever the policy does
            await self.errors.handle(m, error, None, batch)

    async def _commit_retrying(self, rows: list[tuple[Message, Row]]) -> list[tuple[Message, Exception]]:
        """Commit ``rows`` (the refused ones left out, and returned), retrying transient failures."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._commit(rows)
            except Exception as exc:  # noqa: BLE001 - asyncpg raises many types; classified below
                if not is_transient(exc):
                    raise PipelineFailed(f"postgres sink {self.name!r}: writing to {self.config.table} failed: "
                                         f"{type(exc).__name__}: {exc}") from exc
                if self._retry.exhausted(attempt):
                    raise PipelineFailed(f"postgres sink {self.name!r}: writing failed {attempt} times: "
                                         f"{type(exc).__name__}: {exc}") from exc
                if self.ctx is not None:
                    self.ctx.stats.retries += 1
                delay = self._retry.delay(attempt)
                log.warning("postgres sink %s: %s: %s; retry %d in %.2fs", self.name, type(exc).__name__,
                            exc, attempt, delay)
                await asyncio.sleep(delay)

    async def _commit(self, rows: list[tuple[Message, Row]]) -> list[tuple[Message, Exception]]:
        """One transaction: the whole batch, or — if a row is refused — each row under a savepoint."""
        refused: list[tuple[Message, Exception]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                async with conn.transaction():  # a savepoint: undone alone if a row is refused
                    await self._write_rows(conn, [r for _, r in rows])
            except Exception as exc:  # noqa: BLE001 - classified: only refused rows are handled here
                if not is_refused(exc):
                    raise
                for m, row in rows:
                    try:
                        async with conn.transaction():
                            await conn.execute(self._sql, *row)
                    except Exception as row_exc:  # noqa: BLE001 - as above
                        if not is_refused(row_exc):
                            raise
                        refused.append((m, row_exc))
        self.commits += 1
        return refused

    async def _write_rows(self, conn: Any, rows: list[Row]) -> None:
        if self.config.mode == "copy":
            schema, _, table = self.config.table.rpartition(".")
            await conn.copy_records_to_table(table, records=rows, columns=self._columns, schema_name=schema or None)
        else:
            await conn.executemany(self._sql, rows)
