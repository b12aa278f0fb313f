"""enrich: add fields to each (mapping) event from a lookup table, a user function or an HTTP service.

Table mode loads ``table`` (json, jsonl or csv) once in `open` and joins each
event's ``key`` field against the table's ``table_key``. Function mode calls
``fn(key)`` (or ``fn(value)`` without a key), sync or async, with an optional
LRU/TTL cache, a per-call ``timeout``, up to ``concurrency`` events in flight,
and one shared call for concurrent lookups of the same key (single-flight).
URL mode is function mode whose function is an `HttpLookup` (``GET url`` with
the key in the URL, ``{key}``): 2xx JSON objects are merged, 404 means not
found; every attempt has a timeout (10 s by default), retryable answers are
retried concurrently with ``Retry-After`` honoured, others fail at once, and
an optional circuit breaker stops calling a dead service. Failures and
timeouts go to the stage's ``on_error`` policy, named by a URL without its
query string.
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import aiofiles
import aiohttp
import orjson
from pydantic import Field, SecretStr, model_validator

from ..connectors.postgres_lookup import PostgresLookupConfig
from ..connectors.redis_lookup import RedisLookupConfig
from ..core.backoff import Backoff
from ..core.batch import Batch
from ..core.message import Message
from ..core.refs import FunctionRef
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig, StageContext
from .base import EventTransform
from .batch_lookup import LOOKUPS, BatchLookup
from .cache import MISSING, CacheConfig, LRUCache, SingleFlight
from .fields import path_getter
from .lookup import (
    DEFAULT_RETRY_STATUSES,
    DEFAULT_TIMEOUT,
    BreakerConfig,
    HttpLookup,
    LookupFailed,
    StatusClass,
)

__all__ = ["Enrich", "EnrichConfig", "LookupFailed", "LookupMissing"]

TableFormat = Literal["json", "jsonl", "csv"]

#: File suffix -> table format, when ``format`` is not given.
SUFFIX_FORMATS: dict[str, TableFormat] = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
                                          ".csv": "csv"}


class EnrichConfig(EventTransformConfig):
    table: str | None = Field(None, description="lookup table file (relative paths: to `base_dir`, "
                                                "default the current working directory)")
    format: TableFormat | None = Field(None, description="table format: json (a list of objects, or an "
                                                         "object of key -> object), jsonl or csv; default "
                                                         "from the file suffix")
    key: str | None = Field(None, description="event field (dotted path) holding the lookup key; "
                                              "required with `table`")
    table_key: str | None = Field(None, description="table column/field matched against the key "
                                                    "(default: same as `key`)")
    fields: list[str] | None = Field(None, description="fields of the table row / function result to "
                                                       "copy (default: all but `table_key`)")
    prefix: str = Field("", description="prepended to the names of the copied fields")
    on_missing: Literal["keep", "drop", "error", "default"] = Field(
        "keep", description="when nothing is found: keep the event as is, drop it, send it to "
                            "`on_error`, or copy `default` as if it were the found row")
    default: dict[str, Any] = Field(default_factory=dict,
                                    description="the row used for missing keys with on_missing: default")
    fn: FunctionRef | None = Field(None, description="`module:function` (sync or async) called with the "
                                                     "key (or the whole value without `key`), returning a "
                                                     "mapping to merge or null for not found")
    url: str | None = Field(None, description="HTTP lookup: GET this URL with `{key}` replaced by the "
                                              "URL-quoted key; a JSON object is merged, 404 is not found")
    headers: dict[str, SecretStr] = Field(default_factory=dict,
                                          description="request headers of `url` lookups (secrets welcome; "
                                                      "never logged)")
    cache: CacheConfig | None = Field(None, description="cache function results per key "
                                                        "(`{max_size: N, ttl: seconds}`); needs `key`")
    timeout: float | None = Field(None, gt=0, description="seconds one async function call (or one `url` "
                                                          "request, default 10) may take; a timeout goes to "
                                                          "`on_error` (`url`: after `retry`)")
    retry: Backoff = Field(default_factory=lambda: Backoff(backoff=0.2, max_backoff=10.0, max_attempts=3),
                           description="`url`: how a failed request (network error, timeout, retryable "
                                       "status) is retried; waits at least a `Retry-After`")
    retry_statuses: list[int | StatusClass] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_STATUSES),
        description="`url`: statuses worth retrying (numbers, or 4xx/5xx); any other fails at once")
    breaker: BreakerConfig | None = Field(
        None, description="`url`: after `failures` failed lookups in a row, fail fast for `open_seconds` "
                          "(`{failures: 5, open_seconds: 10}`)")
    base_dir: str | None = Field(None, description="directory a relative `table` path is resolved "
                                                   "against (default: the current working directory)")
    postgres: PostgresLookupConfig | None = Field(None, description="look `key` up in a PostgreSQL table "
                                                                    "(see PostgreSQL); batched per `concurrency`")
    redis: RedisLookupConfig | None = Field(None, description="look `key` up in Redis, MGET or HGETALL (see "
                                                              "Redis); one round trip per batch")

    def batch_lookups(self) -> list[str]:
        """The batch lookup kinds configured (`LOOKUPS` names whose key is set)."""
        return [kind for kind in LOOKUPS.names() if getattr(self, kind, None) is not None]

    @model_validator(mode="after")
    def _check(self) -> EnrichConfig:
        lookups = self.batch_lookups()
        if sum(x is not None for x in (self.table, self.fn, self.url)) + len(lookups) != 1:
            kinds = [f"`{k}`" for k in ("table", "fn", "url", *LOOKUPS.names())]
            raise ValueError(f"enrich needs exactly one of {', '.join(kinds[:-1])} or {kinds[-1]}")
        if lookups and self.key is None:
            raise ValueError(f"enrich with `{lookups[0]}` needs `key` (the event field to look up)")
        if self.url is not None:
            if self.key is None or "{key}" not in self.url:
                raise ValueError("enrich with `url` needs `key` and a `{key}` placeholder in the url")
            if self.timeout is None:
                self.timeout = DEFAULT_TIMEOUT
        else:
            if self.headers or self.breaker is not None or "retry" in self.model_fields_set \
                    or "retry_statuses" in self.model_fields_set:
                raise ValueError("`headers`, `retry`, `retry_statuses` and `breaker` apply to `url`")
        if self.table is not None:
            if self.key is None:
                raise ValueError("enrich with `table` needs `key` (the event field to look up)")
            if self.format is None:
                fmt = SUFFIX_FORMATS.get(Path(self.table).suffix.lower())
                if fmt is None:
                    raise ValueError(f"cannot tell the format of table {self.table!r} from its suffix; "
                                     f"set `format` to one of json, jsonl, csv")
                self.format = fmt
            if self.cache is not None or self.timeout is not None:
                raise ValueError("`cache` and `timeout` apply to `fn` and `url`, not to `table`")
        else:
            for name in ("format", "table_key", "base_dir"):
                if getattr(self, name) is not None:
                    raise ValueError(f"`{name}` applies to `table`, not to `fn` or `url`")
            if self.cache is not None and self.key is None:
                raise ValueError("`cache` needs `key`: results are cached per key")
        if self.key is not None:
            path_getter(self.key)  # rejects malformed paths
        if self.default and self.on_missing != "default":
            raise ValueError("`default` is only used with on_missing: default")
        return self


class LookupMissing(LookupError):
    """No table row / function result for an event's key (on_missing: error)."""


# -- table files ----------------------------------------------------------------------
def _json_rows(data: bytes) -> list[Any] | dict[str, Any]:
    rows: list[Any] | dict[str, Any] = orjson.loads(data)
    return rows


def _jsonl_rows(data: bytes) -> list[Any]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def _csv_rows(data: bytes) -> list[Any]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


#: Table format -> parser of the file's bytes into rows (or a key -> row mapping).
TABLE_PARSERS: dict[str, Callable[[bytes], list[Any] | dict[str, Any]]] = {
    "json": _json_rows, "jsonl": _jsonl_rows, "csv": _csv_rows,
}


def index_rows(rows: list[Any] | dict[str, Any], table_key: str,
               project: Callable[[Mapping[str, Any]], dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Key -> projected row. Non-string keys are also indexed as strings (csv keys are strings)."""
    if isinstance(rows, dict):
        items = list(rows.items())
    elif isinstance(rows, list):
        items = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or table_key not in row:
                raise ValueError(f"row {i + 1} is not an object with a {table_key!r} field")
            items.append((row[table_key], row))
    else:
        raise ValueError("expected a list of objects or an object of key -> object")
    index: dict[Any, dict[str, Any]] = {}
    for key, row in items:
        if not isinstance(row, dict):
            raise ValueError(f"the row of key {key!r} is not an object")
        index[key] = project(row)
    for key in [k for k in index if not isinstance(k, str)]:
        index.setdefault(str(key), index[key])
    return index


async def load_table(path: Path, fmt: str) -> list[Any] | dict[str, Any]:
    """Read a table file (through aiofiles) and parse it."""
    async with aiofiles.open(path, "rb") as f:
        data = await f.read()
    return TABLE_PARSERS[fmt](data)


# -- the transform --------------------------------------------------------------------
@TRANSFORMS.register("enrich")
class Enrich(EventTransform[EnrichConfig]):
    """Merge fields found for each event's key (table row or function result) into the event."""

    def setup(self) -> None:
        cfg = self.config
        self._key = path_getter(cfg.key) if cfg.key is not None else None
        self._table_key = cfg.table_key or cfg.key
        self._table: dict[Any, dict[str, Any]] = {}
        #: Table mode with a top-level key: the field `fast` looks up directly (set by `open`).
        self._plain_key: str | None = None
        self._default = self.project(cfg.default) if cfg.on_missing == "default" else None
        self.fn: Callable[[Any], Any] | None = cfg.fn
        self._session: aiohttp.ClientSession | None = None
        self.lookup: HttpLookup | None = None  # url mode, once open
        self.is_async = cfg.fn is not None or cfg.url is not None  # `concurrency` calls (and batches) in flight
        #: postgres, redis …: whole batches go to the lookup (`process`), up to `concurrency` batches in flight
        self._lookup: BatchLookup | None = None
        for kind in cfg.batch_lookups():
            self._lookup = LOOKUPS.get(kind)(getattr(cfg, kind))
        self.is_async = self.is_async or self._lookup is not None
        self.cache = LRUCache(cfg.cache.max_size, cfg.cache.ttl) if cfg.cache is not None else None
        self._flight = SingleFlight()
        #: Calls of ``fn`` made (not answered from the cache or a shared in-flight call).
        self.calls = 0

    def table_path(self) -> Path:
        """The table file: ``table`` resolved against ``base_dir`` or the working directory."""
        assert self.config.table is not None
        path = Path(self.config.table)
        return path if path.is_absolute() else Path(self.config.base_dir or os.getcwd()) / path

    def check_inputs(self) -> list[tuple[str, str]]:
        if self.config.table is not None and not self.table_path().is_file():
            return [("table", f"no such file: {self.table_path()}")]
        return []

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        if self.config.table is not None:
            path = self.table_path()
            assert self.config.format is not None and self._table_key is not None
            try:
                rows = await load_table(path, self.config.format)
                self._table = index_rows(rows, self._table_key, self.project)
            except (OSError, ValueError) as exc:
                raise ValueError(f"stage {self.name!r}: cannot load enrich table {path}: {exc}") from exc
            key = self.config.key
            # a None key means "no key" (never a row), so a table with a None key takes the general path
            # and a row that holds the key field would change an event's key as it merges: the general path
            if (key is not None and "." not in key and None not in self._table
                    and not any(key in row for row in self._table.values())):
                self._plain_key = key

        if self._lookup is not None:
            await self._lookup.open()
        if self.config.url is not None:
            cfg = self.config
            headers = {k: v.get_secret_value() for k, v in cfg.headers.items()}
            self._session = aiohttp.ClientSession(headers=headers)
            assert cfg.url is not None and cfg.timeout is not None
            self.fn = self.lookup = HttpLookup(cfg.url, self._session, timeout=cfg.timeout, retry=cfg.retry,
                                               retry_statuses=cfg.retry_statuses, breaker=cfg.breaker,
                                               on_retry=self._count_retry)

    def _count_retry(self) -> None:
        if self.ctx is not None:
            self.ctx.stats.retries += 1

    async def close(self) -> None:
        self._flight.cancel()
        if self._lookup is not None:
            await self._lookup.close()
        if self._session is not None:
            await self._session.close()
        await super().close()

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        if self._lookup is None:
            return await super().process(batch)
        assert self._key is not None
        result, failed = await self._lookup.enrich(batch, self._key, self.project, self._resolve, self.emit,
                                                   self.cache, self.errors)
        self._count_filtered(batch, result, failed)
        return result

    # -- what is merged ---------------------------------------------------------------
    def project(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of ``row`` to merge into an event, named with ``prefix``."""
        prefix, fields = self.config.prefix, self.config.fields
        if fields is None:
            skip = self._table_key if self.config.table is not None else None
            return {prefix + k: v for k, v in row.items() if k != skip}
        return {prefix + f: row[f] for f in fields if f in row}

    def _resolve(self, found: dict[str, Any] | None, key: Any) -> dict[str, Any] | None:
        if found is not None:
            return found
        if self.config.on_missing == "error":
            raise LookupMissing(f"nothing found for key {key!r}")
        return self._default

    # -- per event --------------------------------------------------------------------
    def call(self, msg: Message) -> Any:
        value = msg.value
        if not isinstance(value, dict):
            raise TypeError(f"enrich expects a mapping event value, got {type(value).__name__}")
        if self.config.table is None:
            return self._fetch(value)
        assert self._key is not None
        key = self._key(value)
        found = None
        if key is not None:
            table = self._table
            found = table.get(key)
            if found is None and not isinstance(key, str):
                found = table.get(str(key))
        return self._resolve(found, key)

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        if result is None:
            if self.config.on_missing == "drop":
                return
        else:
            msg.value.update(result)
        out.append(msg)

    def fast(self, batch: Batch) -> Batch:
        if self._plain_key is not None and self._merge_in_place(batch.messages):
            return batch
        # look everything up first: a lookup that raises leaves no event half-done
        call, emit = self.call, self.emit
        msgs = batch.messages
        results = [call(m) for m in msgs]
        out: list[Message] = []
        for m, r in zip(msgs, results, strict=True):
            emit(m, r, out)
        return batch.derive(out)

    def _merge_in_place(self, msgs: list[Message]) -> bool:
        """Table mode's common case in one pass: merge each event's row into it; False at the first event
        that is not a mapping with its key's row (then the general path does the batch again, which redoes
        the events merged so far to the same result: no row holds the key field, so their keys stand)."""
        get, key = self._table.get, self._plain_key
        try:
            for m in msgs:
                value = m.value
                value.update(get(value[key]))  # no row: update(None) raises before changing anything
        except (TypeError, KeyError, AttributeError, IndexError):  # not a mapping, no key, unhashable, no row
            return False
        return True

    # -- function mode ----------------------------------------------------------------
    async def _fetch(self, value: dict[str, Any]) -> dict[str, Any] | None:
        if self._key is None:
            return self._resolve(await self._invoke(value), "(whole value)")
        key = self._key(value)
        if key is None:
            return self._resolve(None, key)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not MISSING:
                return self._resolve(hit, key)
        return self._resolve(await self._flight.do(key, lambda: self._load(key)), key)

    async def _load(self, key: Any) -> dict[str, Any] | None:
        found = await self._invoke(key)
        if self.cache is not None:
            self.cache.put(key, found)
        return found

    async def _invoke(self, arg: Any) -> dict[str, Any] | None:
        """One call of ``fn`` (under ``timeout``), its mapping result projected."""
        assert self.fn is not None
        self.calls += 1
        timeout = self.config.timeout if self.lookup is None else None  # a lookup times each request
        result = self.fn(arg)
        if inspect.isawaitable(result):
            if timeout is None:  # asyncio.timeout(None) costs ~3 us a call for nothing
                result = await result
            else:
                async with asyncio.timeout(timeout):
                    result = await result
        if result is None:
            return None
        if not isinstance(result, Mapping):
            raise TypeError(f"enrich function returned a {type(result).__name__}, expected a mapping or None")
        return self.project(result)
