"""enrich's ``postgres`` lookup: the rows of a batch's keys from a table, in one query.

enrich hands each batch to `PostgresLookup.enrich`: the distinct keys of
its events that enrich's ``cache`` does not hold are fetched by one
``SELECT … WHERE key_column = ANY($1)`` (``max_keys`` per query; a statement
asyncpg prepares once per connection), then every event is resolved at once
— no task or coroutine per event; a key another batch is fetching is awaited,
not fetched again. An event that is not a mapping, a key the
key column cannot take, or a missing row with ``on_missing: error`` goes to
enrich's ``on_error``; a failed query, to it for each event of its keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from pydantic import Field

from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..transforms.cache import MISSING, LRUCache
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
    """Rows of a table by key, for enrich (`enrich` per batch)."""

    def __init__(self, config: PostgresLookupConfig) -> None:
        self.config = config
        self._pool: Any = None
        self._sql = ""
        self._as_int = False
        self._columns: list[str] = []
        #: Key -> the fetch of it under way for a batch (another batch with the key awaits it).
        self._inflight: dict[Hashable, asyncio.Future[dict[Hashable, dict[str, Any]]]] = {}
        #: Queries sent, and keys asked for (what batching and the cache save).
        self.queries = self.keys_fetched = 0

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

    def _key(self, key: Any) -> Hashable:
        """The key as the key column takes it (int columns: int; others: numbers as text)."""
        if self._as_int and not isinstance(key, int):
            return int(key)
        if not self._as_int and isinstance(key, (int, float)) and not isinstance(key, bool):
            return str(key)
        return key  # type: ignore[no-any-return]

    async def fetch(self, keys: list[Hashable]) -> dict[Hashable, dict[str, Any]]:
        """Key -> row (without the key column) of those of ``keys`` the table has."""
        found: dict[Hashable, dict[str, Any]] = {}
        key_column, columns, size = self.config.key_column, self._columns, self.config.max_keys
        for start in range(0, len(keys), size):
            self.queries += 1
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(self._sql, keys[start:start + size])
            for row in rows:
                found[row[key_column]] = {c: row[c] for c in columns}
        self.keys_fetched += len(keys)
        return found

    async def enrich(self, batch: Batch, key_of: Callable[[Any], Any], project: Callable[[dict[str, Any]], Any],
                     resolve: Callable[[Any, Any], Any], emit: Callable[[Message, Any, list[Message]], None],
                     cache: LRUCache | None, errors: ErrorHandler) -> tuple[Batch, int]:
        """enrich's work on ``batch``: the batch of what its events became, and how many failed.

        ``project`` shapes a row (enrich's ``fields`` and ``prefix``), ``resolve``
        applies ``on_missing`` to a found row or None, ``emit`` adds the event.
        """
        msgs = batch.messages
        keys: list[Any] = []
        failures: dict[int, Exception] = {}
        for i, m in enumerate(msgs):
            try:
                if not isinstance(m.value, dict):
                    raise TypeError(f"enrich expects a mapping event value, got {type(m.value).__name__}")
                raw = key_of(m.value)
                keys.append(None if raw is None else self._key(raw))
            except (TypeError, ValueError) as exc:
                keys.append(None)
                failures[i] = exc
        try:
            found = await self._rows(keys, project, cache)
        except Exception as exc:  # noqa: BLE001 - the query failed: every event with a key fails with it
            found = {}
            failures.update((i, exc) for i, key in enumerate(keys) if key is not None and i not in failures)
        out: list[Message] = []
        for i, (m, key) in enumerate(zip(msgs, keys, strict=True)):
            try:
                if i in failures:
                    raise failures[i]
                result = resolve(found.get(key) if key is not None else None, key)
            except Exception as exc:  # noqa: BLE001 - each event's failure goes to its policy
                handled = await errors.handle(m, exc, None, batch)
                if not handled.recovered:
                    continue
                result = handled.value
            emit(m, result, out)
        return batch.derive(out), len(msgs) - len(out)

    async def _rows(self, keys: list[Any], project: Callable[[dict[str, Any]], Any],
                    cache: LRUCache | None) -> dict[Any, Any]:
        """Key -> projected row (or None) of every key of a batch: from ``cache``, else one query."""
        known: dict[Any, Any] = {}
        wanted: list[Hashable] = []
        for key in dict.fromkeys(k for k in keys if k is not None):
            hit = cache.get(key) if cache is not None else MISSING
            if hit is MISSING:
                wanted.append(key)
            else:
                known[key] = hit
        inflight = self._inflight
        theirs = {k: inflight[k] for k in wanted if k in inflight}  # being fetched for another batch
        mine = [k for k in wanted if k not in theirs]
        if mine:
            fetching: asyncio.Future[dict[Hashable, dict[str, Any]]] = asyncio.get_running_loop().create_future()
            fetching.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: none may wait
            inflight.update((k, fetching) for k in mine)
            try:
                rows = await self.fetch(mine)
                fetching.set_result(rows)
            except BaseException as exc:
                fetching.set_exception(exc if isinstance(exc, Exception) else RuntimeError("lookup cancelled"))
                raise
            finally:
                for k in mine:
                    inflight.pop(k, None)
            for key in mine:
                row = rows.get(key)
                known[key] = None if row is None else project(row)
                if cache is not None:
                    cache.put(key, known[key])
        for key, other in theirs.items():
            row = (await asyncio.shield(other)).get(key)
            known[key] = None if row is None else project(row)
        return known
