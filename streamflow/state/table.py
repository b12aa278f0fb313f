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
  (`RestoreProgress` feeds the restore metrics and ``/readyz``): through the
  records stamped at or before the time of the next stream event the group
  will read there (`next_times`), or now when none is waiting — so a restart
  or a rebalance joins the backlog as the first run would have.
* **per stream event** — `read_ahead` applies the table's next records, in
  offset order, while their timestamps are at or before the stream event's
  time and they were written before the stream batch was taken (`end_offsets`
  at its start). A record stamped later waits, fetched, until a stream event
  reaches its time; what waits is at most one fetch per partition.
* **revoked** — the partition's store closes; its next owner restores it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ..connectors.kafka._aiokafka import Consumer, ConsumerRecord
from ..connectors.kafka.clients import start_client
from ..connectors.kafka.security import KafkaConnection
from .changelog import RestoreProgress
from .copartition import partition_counts
from .stores import StateStore, open_store

log = logging.getLogger("streamflow.state")

#: Records one fetch of a table partition takes: the bound on what waits for the stream's time.
FETCH_RECORDS = 1000


class _GroupAdmin(Protocol):
    """The admin calls of `Table.next_times`: a consumer group's committed offsets."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def list_consumer_group_offsets(self, group_id: str, group_coordinator_id: int | None = ...,
                                          partitions: list[TopicPartition] | None = ...) -> dict[Any, Any]: ...


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
    async def assign(self, partitions: Collection[int], until: Mapping[int, int | None]) -> None:
        """Restore ``partitions`` of the table (fresh stores) from the topic's beginning, through the
        records stamped at or before ``until[p]`` (epoch ms; None: all) written as of now."""
        for p in partitions:
            self._restores[p] = RestoreProgress(self.name, p, 0, 0, 0)
        self.revoke([p for p in partitions if p in self._parts])  # assigned again without a revoke
        for p in sorted(partitions):
            store = open_store(self.backend, self.directory / f"{self.name}-{p}", self.name, p)
            tp = TopicPartition(self.topic, p)
            self._parts[p] = _Partition(tp, store, 0)
            self._reassign()
            try:
                await self._restore(self._parts[p], until.get(p))
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

    async def _restore(self, part: _Partition, until_ms: int | None) -> None:
        consumer, tp = self.consumer, part.tp
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        progress = RestoreProgress(self.name, tp.partition, start, end, start)
        self._restores[tp.partition] = progress
        part.position = start
        consumer.seek(tp, start)
        with part.store.batch():
            await self._read(part, until_ms, end, lambda n: self._progress(progress, part, n))
        progress.done = True
        progress.position = part.position
        log.info("restored table %s[%d]: %d records; %d later ones wait for the stream's time", self.topic,
                 tp.partition, progress.records, len(part.waiting) + max(0, end - part.position))

    @staticmethod
    def _progress(progress: RestoreProgress, part: _Partition, applied: int) -> None:
        progress.records += applied
        progress.position = part.position

    async def next_times(self, stream: str, partitions: Collection[int], group_id: str,
                         earliest: bool) -> dict[int, int]:
        """Per partition of topic ``stream``: the timestamp (epoch ms) of the next record consumer group
        ``group_id`` reads there — what a restore reads the table up to — or now when none is waiting.

        A failed look-up falls back to now, with a warning (the restore then reads a little further).
        """
        now = int(time.time() * 1000)
        times = dict.fromkeys(partitions, now)
        tps = [TopicPartition(stream, p) for p in partitions]
        try:
            positions = await self._group_positions(tps, group_id, earliest)
            for tp, position in positions.items():
                record = await self._record_at(tp, position)
                if record is not None:
                    times[tp.partition] = record.timestamp
        except KafkaError as exc:
            log.warning("table %s: the stream's next times are unknown (%s); restoring up to now",
                        self.topic, exc)
        finally:
            self._reassign()
        return times

    async def _group_positions(self, tps: list[TopicPartition], group_id: str,
                               earliest: bool) -> dict[TopicPartition, int]:
        """Where the group resumes each of ``tps`` (committed, else the reset policy), if before its end."""
        admin: _GroupAdmin = AIOKafkaAdminClient(**self.connection.client_options(self.client_id))
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group_id, partitions=tps)
        finally:
            await admin.close()
        starts = await self.consumer.beginning_offsets(tps)
        ends = await self.consumer.end_offsets(tps)
        positions = {}
        for tp in tps:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else \
                starts[tp] if earliest else ends[tp]
            if position < ends[tp]:
                positions[tp] = position
        return positions

    async def _record_at(self, tp: TopicPartition, offset: int) -> ConsumerRecord | None:
        """The first record of ``tp`` at or after ``offset`` (None: none came within a few seconds)."""
        consumer = self.consumer
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for _ in range(10):
            records = (await consumer.getmany(tp, timeout_ms=500, max_records=1)).get(tp)
            if records:
                return records[0]
        return None

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
