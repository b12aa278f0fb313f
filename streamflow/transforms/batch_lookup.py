"""`BatchLookup`: enrich's lookups that fetch the keys of a whole batch at once, and their registry.

enrich hands each batch to `BatchLookup.enrich`: the distinct keys of its
events that enrich's ``cache`` does not hold are fetched by one call of the
lookup's `fetch` (one query, one pipelined round trip), then every event is
resolved at once — no task or coroutine per event; a key another batch is
fetching is awaited, not fetched again (single-flight). An event that is not
a mapping, a key the store cannot take, a value the store holds that cannot
be read, or a missing row with ``on_missing: error`` goes to enrich's
``on_error``; a failed fetch, to it for each event of its keys.

A lookup kind is a subclass registered in `LOOKUPS` under the enrich key
that configures it (``postgres:``, ``redis:``): enrich finds its lookup by
that name, not by an if-chain over kinds.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

from ..core.batch import Batch
from ..core.configs import ConfigModel
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.registry import Registry
from .cache import MISSING, LRUCache

#: What `BatchLookup.fetch` gives a key: the found row, or the error reading it (that key's events fail).
Row = dict[str, Any] | Exception


class BatchLookup(ABC):
    """Rows of a store by key, fetched a batch's keys at a time (subclasses: one per store)."""

    #: The enrich key this lookup is configured under; set by `LOOKUPS.register`.
    type_name: ClassVar[str] = "lookup"

    def __init__(self, config: ConfigModel) -> None:
        self.config = config
        #: Key -> the fetch of it under way for a batch (another batch with the key awaits it).
        self._inflight: dict[Hashable, asyncio.Future[dict[Hashable, Row]]] = {}
        #: Fetches made, and keys asked for (what batching and the cache save).
        self.queries = self.keys_fetched = 0

    @abstractmethod
    async def open(self) -> None:
        """Connect (and check what the config names exists)."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect."""

    def store_key(self, key: Any) -> Hashable:
        """An event's key as the store takes it (raise TypeError/ValueError for one it cannot)."""
        return key  # type: ignore[no-any-return]

    @abstractmethod
    async def fetch(self, keys: list[Hashable]) -> dict[Hashable, Row]:
        """Key -> row of those of ``keys`` the store has (a key left out: not found)."""

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
                keys.append(None if raw is None else self.store_key(raw))
            except (TypeError, ValueError) as exc:
                keys.append(None)
                failures[i] = exc
        try:
            found = await self._rows(keys, project, cache)
        except Exception as exc:  # noqa: BLE001 - the fetch failed: every event with a key fails with it
            found = {}
            failures.update((i, exc) for i, key in enumerate(keys) if key is not None and i not in failures)
        out: list[Message] = []
        for i, (m, key) in enumerate(zip(msgs, keys, strict=True)):
            try:
                if i in failures:
                    raise failures[i]
                row = found.get(key) if key is not None else None
                if isinstance(row, Exception):
                    raise row
                result = resolve(row, key)
            except Exception as exc:  # noqa: BLE001 - each event's failure goes to its policy
                handled = await errors.handle(m, exc, None, batch)
                if not handled.recovered:
                    continue
                result = handled.value
            emit(m, result, out)
        return batch.derive(out), len(msgs) - len(out)

    async def _rows(self, keys: list[Any], project: Callable[[dict[str, Any]], Any],
                    cache: LRUCache | None) -> dict[Any, Any]:
        """Key -> projected row, None or an error, for every key of a batch: from ``cache``, else one fetch."""
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
            fetching: asyncio.Future[dict[Hashable, Row]] = asyncio.get_running_loop().create_future()
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
            self.keys_fetched += len(mine)
            for key in mine:
                known[key] = _projected(rows.get(key), project)
                if cache is not None and not isinstance(known[key], Exception):
                    cache.put(key, known[key])
        for key, other in theirs.items():
            known[key] = _projected((await asyncio.shield(other)).get(key), project)
        return known


def _projected(row: Row | None, project: Callable[[dict[str, Any]], Any]) -> Any:
    """``row`` shaped by enrich's ``project`` (None and errors as they are)."""
    return row if row is None or isinstance(row, Exception) else project(row)


#: enrich key -> the lookup it configures (``postgres``, ``redis``).
LOOKUPS: Registry[type[BatchLookup]] = Registry("lookup")
