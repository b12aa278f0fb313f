"""`Table`: a compacted Kafka topic held as keyed state, one store per partition, read ahead to a time.

The table side of a stream–table join (`streamflow.transforms.join`). Its
topic holds one record per row: the Kafka key is the row's key, the value the
row (a tombstone, value null, deletes it); compaction keeps the latest per key.
The table is partitioned like the stream it is joined with, so the member that
owns stream partition *p* holds table partition *p* only (`streamflow.state.copartition`).

The topic is its own changelog: nothing else is written anywhere.

* **assigned** — `assign` opens a fresh store per partition (memory or RocksDB,
  `streamflow.state.stores`) and restores it from the topic's beginning,
  before the stream side reads a single event of the partition
  (`RestoreProgress` feeds the restore metrics and ``/readyz``), up to the
  topic's end as of then. (Reading it only as far as the partition's next
  stream event needs would join a backlog exactly as the first run did; it
  costs finding that event inside the rebalance callback — left for later.)
* **per stream event** — `read_ahead` applies the table's next records, in
  offset order, while their timestamps are at or before the stream event's
  time and they were written before the stream batch was taken (`end_offsets`
  at its start). A record stamped later waits, fetched, until a stream event
  reaches its time; what waits is at most one fetch per partition.
* **revoked** — the partition's store closes; its next owner restores it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..connectors.kafka._aiokafka import Consumer, ConsumerRecord
from ..connectors.kafka.clients import start_client
from ..connectors.kafka.security import KafkaConnection
from .changelog import RestoreProgress
from .copartition import partition_counts
from .stores import StateStore, open_store

log = logging.getLogger("streamflow.state")

#: Records one fetch of a table partition takes: the bound on what waits for the stream's time.
FETCH_RECORDS = 1000


class _Partition:
    """One table partition held here: its store, its next offset, the fetched records not applied yet."""

    __slots__ = ("tp", "store", "position", "waiting")

    def __init__(self, tp: TopicPartition, store: StateStore, position: int) -> None:
        self.tp = tp
        self.store = store
        self.position = position
        self.waiting: deque[ConsumerRecord] = deque()


class Table:
    """The rows of a compacted topic, for the partitions this member owns."""

    def __init__(self, connection: KafkaConnection, topic: str, *, backend: str = "memory",
                 directory: Path, name: str = "table", client_id: str = "streamflow-table",
                 connect_timeout: float = 60.0) -> None:
        self.connection = connection
        self.topic = topic
        self.backend = backend
        self.directory = directory
        self.name = name
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self._consumer: Consumer | None = None
        self._parts: dict[int, _Partition] = {}
        self._restores: dict[int, RestoreProgress] = {}

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        options = self.connection.client_options(self.client_id)
        self._consumer = await start_client(
            lambda: AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                     auto_offset_reset="earliest"),
            f"table {self.topic}", self.connect_timeout, log, self.connection.bootstrap_servers)

    async def stop(self) -> None:
        for part in self._parts.values():
            part.store.close()
        self._parts.clear()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError(f"table {self.topic} is not started")
        return self._consumer

    async def partition_count(self) -> int:
        """Partitions of the table topic; a missing topic is a `LookupError`."""
        return (await partition_counts(self.connection, [self.topic], self.client_id))[self.topic]

    # -- what the restore metrics and /readyz read -----------------------------------
    @property
    def restores(self) -> list[RestoreProgress]:
        return list(self._restores.values())

    @property
    def ready(self) -> bool:
        return all(p.done for p in self._restores.values())

    # -- partitions ----------------------------------------------------------------------
    async def assign(self, partitions: Collection[int]) -> None:
        """Restore ``partitions`` of the table (fresh stores) from the topic's beginning to its end as of now."""
        for p in partitions:
            self._restores[p] = RestoreProgress(self.name, p, 0, 0, 0)
        self.revoke([p for p in partitions if p in self._parts])  # assigned again without a revoke
        for p in sorted(partitions):
            store = open_store(self.backend, self.directory / f"{self.name}-{p}", self.name, p)
            tp = TopicPartition(self.topic, p)
            self._parts[p] = _Partition(tp, store, 0)
            self._reassign()
            try:
                await self._restore(self._parts[p])
            except BaseException:
                self.revoke([p])
                raise

    def revoke(self, partitions: Collection[int]) -> None:
        """Let go of ``partitions`` (their next owner restores them)."""
        for p in partitions:
            self._restores.pop(p, None)
            part = self._parts.pop(p, None)
            if part is not None:
                part.store.close()
        self._reassign()

    def _reassign(self) -> None:
        """Read exactly the partitions held, each from where it is (assigning resets positions)."""
        consumer = self.consumer
        consumer.assign([part.tp for part in self._parts.values()])
        for part in self._parts.values():
            consumer.seek(part.tp, part.position)

    async def _restore(self, part: _Partition) -> None:
        consumer, tp = self.consumer, part.tp
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        progress = RestoreProgress(self.name, tp.partition, start, end, start)
        self._restores[tp.partition] = progress
        part.position = start
        consumer.seek(tp, start)
        with part.store.batch():
            await self._read(part, None, end, lambda n: self._progress(progress, part, n))
        progress.done = True
        progress.position = part.position
        log.info("restored table %s[%d]: %d records up to offset %d", self.topic, tp.partition,
                 progress.records, end)

    @staticmethod
    def _progress(progress: RestoreProgress, part: _Partition, applied: int) -> None:
        progress.records += applied
        progress.position = part.position

    # -- reading ahead ----------------------------------------------------------------------
    async def end_offsets(self, partitions: Collection[int]) -> dict[int, int]:
        """The end offset of each held partition of ``partitions``, as of now."""
        tps = [self._parts[p].tp for p in partitions if p in self._parts]
        ends = await self.consumer.end_offsets(tps) if tps else {}
        return {tp.partition: end for tp, end in ends.items()}

    async def read_ahead(self, partition: int, until_ms: int | None, end: int) -> None:
        """Apply partition ``partition``'s records below offset ``end`` stamped at or before ``until_ms``
        (epoch ms; None: every one), in offset order, stopping at the first stamped later."""
        part = self._parts[partition]
        await self._read(part, until_ms, end, None)

    async def _read(self, part: _Partition, until_ms: int | None, end: int,
                    on_applied: Callable[[int], None] | None) -> None:
        waiting, store = part.waiting, part.store
        while True:
            applied = 0
            while waiting:
                record = waiting[0]
                if record.offset >= end or (until_ms is not None and record.timestamp > until_ms):
                    break
                waiting.popleft()
                if record.key is not None:  # a row needs a key; a keyless record is no row
                    store.restore(record.key, record.value, record.offset)
                applied += 1
            if on_applied is not None:
                on_applied(applied)
            if waiting or part.position >= end:
                return
            fetched = await self.consumer.getmany(part.tp, timeout_ms=500, max_records=FETCH_RECORDS)
            waiting.extend(fetched.get(part.tp, ()))
            part.position = await self.consumer.position(part.tp)

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The row of ``key`` in table partition ``partition`` as read so far (None: no row)."""
        return self._parts[partition].store.get(key)

    def holds(self, partition: int) -> bool:
        return partition in self._parts
