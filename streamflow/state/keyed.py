"""`KeyedState`: a stage's declared states, kept per input partition and logged to their changelogs.

The engine side of contract 8 for one stage. It is the stage's
`PartitionListener`:

* **assigned** — for each newly assigned input partition, a fresh store per
  declared state is opened and restored from the state's changelog
  (`streamflow.state.changelog`). The Kafka source holds the partition's reads
  while this runs (it pauses the partition inside its rebalance callback), so
  no event of the partition is processed before its state is back. Restoring
  inside the callback keeps the rule simple and visible; the group's
  heartbeat runs on, and the time is bounded by the changelog's size, which
  compaction keeps near one record per key.
* **per event** — `enter` starts the event on its partition's stores
  (`StateStore.begin`: a replayed offset runs read-only) and binds the views
  to the event's key; the function gets the returned `StateScope`.
* **per batch** — `hold_until_flushed` retains the batch's acks once, and a
  flush task writes the changes to the changelogs and releases them once the
  broker has acknowledged every record. Flushes run one after the other (a
  later one picks up everything changed meanwhile), so the changelog keeps
  each key's writes in order, and the commit watermark never passes an input
  whose state change could still be lost.
* **revoked** — the source drained the partition (its acks wait for the
  flushes, so the changes are logged) and committed it; the stores close.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core.batch import Batch
from ..core.message import Message
from ..core.stage import Source
from .stores import StateStore, open_store
from .views import MapState, ValueState, _View

if TYPE_CHECKING:  # the changelog imports the Kafka connector, which imports the transforms that import this
    from .changelog import Changelog, RestoreProgress

log = logging.getLogger("streamflow.state")

#: The kinds of state a stage may declare: ``value`` (`ValueState`) or ``map`` (`MapState`).
StateKind = Literal["value", "map"]
_VIEWS: dict[str, type[_View]] = {"value": ValueState, "map": MapState}


class StateScope:
    """What a stateful function receives: its declared states, bound to the current event's key.

    ``scope.balance`` (or ``scope["balance"]``) is the `ValueState`/`MapState`
    declared as ``balance``; ``scope.key`` is the event's key; ``scope.replaying``
    is True while the event is a replay whose changes are in the state already
    (its writes are dropped; what it reads includes its own earlier effect).
    """

    def __init__(self, views: dict[str, _View], stores: list[StateStore]) -> None:
        self._views = views
        self._stores = stores
        self.key: bytes | None = None
        self._applying: int | None = None  # offset of the input being applied (a retry of it applies too)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._views[name]
        except KeyError:
            raise AttributeError(f"no state named {name!r}; declared: {', '.join(self._views)}") from None

    def __getitem__(self, name: str) -> Any:
        return self._views[name]

    @property
    def replaying(self) -> bool:
        return self._stores[0].replaying

    def finish(self) -> None:
        """The function is done with the current event: a flush may now mark it applied."""
        for store in self._stores:
            store.finish()

    async def finishing(self, result: Awaitable[Any]) -> Any:
        """Await an async function's ``result``, then `finish`."""
        try:
            return await result
        finally:
            self.finish()


class KeyedState:
    """The declared states of one stage: stores per input partition, their changelogs, their flushes."""

    def __init__(self, stage: str, states: dict[str, StateKind], backend: str = "memory",
                 directory: Path | None = None, on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.stage = stage
        self.on_failure = on_failure
        self.states = states
        self.backend = backend
        self._directory = directory
        self._own_directory = False
        self._changelogs: dict[str, Changelog] = {}
        self._scopes: dict[int, StateScope] = {}  # by input partition
        self._restores: dict[tuple[str, int], RestoreProgress] = {}  # of every store held, running or done
        self._flushing: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    # -- what the stage reads -------------------------------------------------------
    @property
    def ready(self) -> bool:
        """False while a restore runs (``/readyz`` says 503)."""
        return all(p.done for p in self._restores.values())

    @property
    def restores(self) -> list[RestoreProgress]:
        """The restore of every store held, running or done (for the restore metrics).

        A store's record goes with its partition's revocation; a partition
        assigned again is restored, and counted, afresh."""
        return list(self._restores.values())

    def enter(self, msg: Message, key: bytes | str | None = None) -> StateScope:
        """Start ``msg`` on its partition's stores and bind the states to its key (or to ``key``)."""
        scope = self._scopes.get(msg.partition if msg.partition is not None else -1)
        if scope is None:
            raise RuntimeError(f"no state for {msg.position()}: its partition is not assigned to this member")
        offset = msg.offset if msg.offset is not None else -1
        if offset != scope._applying:  # not a retry of the input being applied (error policy `retry`)
            applies = [store.begin(offset) for store in scope._stores]
            scope._applying = offset if applies[0] else None
        for view in scope._views.values():
            view.bind(msg.key if key is None else key)
        scope.key = scope._views[next(iter(scope._views))].key
        return scope

    def store(self, partition: int, name: str) -> StateStore | None:
        """The store of state ``name`` for input ``partition`` (None: the partition is not assigned here)."""
        scope = self._scopes.get(partition)
        return None if scope is None else scope._stores[list(self.states).index(name)]

    def scope(self, partition: int) -> StateScope | None:
        """The states of input ``partition`` (None: not assigned here), read without starting an event."""
        return self._scopes.get(partition)

    def owns(self, msg: Message) -> bool:
        """Whether ``msg``'s partition is assigned here (a straggler of a revoked one is not)."""
        return msg.partition in self._scopes

    def hold_until_flushed(self, batch: Batch) -> None:
        """Keep ``batch``'s source positions uncommitted until its state changes are in the changelog."""
        if self._failed is not None:
            raise self._failed
        batch.retain()
        self._flushing = asyncio.ensure_future(self._flush_after(self._flushing, batch))

    async def _flush_after(self, previous: asyncio.Task[None] | None, batch: Batch) -> None:
        if previous is not None:
            await previous
        if self._failed is not None:
            return
        try:
            for scope in list(self._scopes.values()):
                for name, store in zip(self.states, scope._stores, strict=True):
                    if store.pending_changes:
                        await self._changelogs[name].flush(store)
        except Exception as exc:  # noqa: BLE001 - any failed flush fails the pipeline
            self._failed = exc  # its acks stay held: nothing after it is committed
            log.error("stage %s: writing the state changelog failed: %s", self.stage, exc)
            if self.on_failure is not None:
                self.on_failure(exc)
            return
        batch.ack()

    async def drain(self) -> None:
        """Wait until every change so far is in the changelog (end of stream, shutdown)."""
        if self._flushing is not None:
            await self._flushing

    # -- partition listener ------------------------------------------------------------
    async def assigned(self, source: object, topic: str, partitions: Collection[int], total: int) -> None:
        """Restore the states of ``partitions`` from their changelogs."""
        from .changelog import RestoreProgress

        if not partitions:
            return
        if not self._changelogs:
            await self._start_changelogs(source, total)
        pending = [(name, partition) for partition in sorted(partitions) for name in self.states]
        for name, partition in pending:  # every store is "restoring" from now: not ready, and in the metrics
            self._restores[(name, partition)] = RestoreProgress(name, partition, 0, 0, 0)
        for partition in sorted(partitions):
            stores = []
            for name in self.states:
                store = open_store(self.backend, self._store_directory(name, partition), name, partition)
                store.skips_logged_writes = True
                try:
                    await self._changelogs[name].restore(store, self._on_progress)
                except BaseException:  # a failed restore fails the stage: the stores not restored are not held
                    for key in pending:
                        if not self._restores[key].done:
                            del self._restores[key]
                    raise
                stores.append(store)
            views = {name: _VIEWS[kind](store) for (name, kind), store in zip(self.states.items(), stores,
                                                                                strict=True)}
            self._scopes[partition] = StateScope(views, stores)

    def _on_progress(self, progress: RestoreProgress) -> None:
        self._restores[(progress.state, progress.partition)] = progress

    async def revoked(self, topic: str, partitions: Collection[int]) -> None:
        """Close the stores of ``partitions`` (drained and committed by the source)."""
        for partition in partitions:
            for name in self.states:
                self._restores.pop((name, partition), None)
            scope = self._scopes.pop(partition, None)
            if scope is not None:
                for store in scope._stores:
                    store.close()

    async def _start_changelogs(self, source: object, partitions: int) -> None:
        from ..connectors.kafka.security import KafkaConnection
        from .changelog import Changelog, changelog_topic

        connection = getattr(source, "config", None)
        if not isinstance(source, Source) or not isinstance(connection, KafkaConnection):
            raise TypeError(f"source {source!r} has no Kafka connection for the state changelog")
        pipeline = source.ctx.pipeline if source.ctx is not None else "pipeline"
        for name in self.states:
            changelog = Changelog(connection, changelog_topic(pipeline, name), partitions,
                                  client_id=f"streamflow-{pipeline}-{self.stage}-state",
                                  transactional=getattr(source, "transactional_producer", None))
            await changelog.start()
            self._changelogs[name] = changelog

    def _store_directory(self, name: str, partition: int) -> Path:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="streamflow-state-"))
            self._own_directory = True
        return self._directory / self.stage / f"{name}-{partition}"

    async def close(self) -> None:
        """Wait for the last flush, close every store and changelog (the changelog keeps the state)."""
        try:
            if self._failed is None:
                await self.drain()
        finally:
            for scope in self._scopes.values():
                for store in scope._stores:
                    store.close()
            self._scopes.clear()
            for changelog in self._changelogs.values():
                await changelog.stop()
            self._changelogs.clear()
            if self._own_directory and self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
