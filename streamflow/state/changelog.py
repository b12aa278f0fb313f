"""`Changelog`: every state change in a compacted Kafka topic, and a partition's store restored from it.

One topic per pipeline and state (`changelog_topic`), created if missing with
``cleanup.policy=compact`` and as many partitions as the input topic: the
store of input partition *p* logs to changelog partition *p*. A record is

- a change: key ``0x01`` + store key, value the new bytes or None (a tombstone:
  deleted), headers ``streamflow.source.partition`` / ``streamflow.source.offset``
  naming the input it came from;
- the applied marker: key ``0x00``, value the store's `applied` offset in ASCII,
  written with every flush — compaction keeps the newest change per key, and
  deletes tombstones after ``delete.retention.ms``, so without it a restore
  could come back with an older `applied` than the state it holds.

How the engine uses it (contract 8):

1. A stage declares its states; on partition assignment, before the first
   event of partition *p*, the engine opens a fresh store per state and
   `restore`\\ s it (`RestoreProgress` feeds the restore metric, ``/readyz``
   says 503 until every assigned store is restored).
2. For each input event, ``store.begin(offset)``, bind the views to the
   event's key, run the function. A replayed offset runs read-only.
3. **Flush before commit**: the source batch's `Ack` is retained once for the
   changelog, and released only when `flush` returns — i.e. when the broker
   has acknowledged (``acks=all``) every change and the marker. So the commit
   watermark (contract 2) never passes an input whose state change could be
   lost: after kill -9 the committed offset is at most what the changelog
   holds, and every input after it is either in the changelog (restored, its
   replay read-only) or replayed and applied afresh. A failed flush fails the
   pipeline; nothing after it is committed.
4. On revoke: drain, `flush`, commit, close the stores — all inside the
   source's ``revoke_timeout`` (shorter than the rebalance timeout). A flush
   is one round trip for at most a batch's changes, so it fits.

Records past the end offset read at the start of a restore are not applied:
only the partition's owner writes, and it is the one restoring.

Under ``delivery: exactly_once`` (``transactional`` given) the changes are sent
with the pipeline's transactional producer, in the transaction that commits
their inputs' offsets, and a restore reads ``read_committed``: a store comes back
as of the last committed transaction, whatever an aborted one had written.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ..connectors.kafka._aiokafka import Admin, Consumer, ConsumerRecord, Producer
from ..connectors.kafka.clients import RenewableProducer, start_client
from ..connectors.kafka.security import KafkaConnection
from .stores import StateStore
from .topics import ChangelogError, ensure_compacted_topic

log = logging.getLogger("streamflow.state")

CHANGE_PREFIX = b"\x01"
APPLIED_KEY = b"\x00"
SOURCE_PARTITION = "streamflow.source.partition"
SOURCE_OFFSET = "streamflow.source.offset"
#: Most records one restore fetch hands over (the reader's fetches are `RESTORE_FETCH_BYTES` per partition).
RESTORE_FETCH_RECORDS = 50_000
RESTORE_FETCH_BYTES = 8 * 2**20


def changelog_topic(pipeline: str, state: str) -> str:
    """The changelog topic of ``state`` in ``pipeline``: ``<pipeline>-<state>-changelog``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{pipeline}-{state}-changelog")
    if len(name) > 249:
        raise ChangelogError(f"changelog topic name longer than Kafka's 249 characters: {name[:60]}…")
    return name


@dataclass
class RestoreProgress:
    """How far the restore of one store is: what the metrics and ``/readyz`` read."""

    state: str
    partition: int
    start: int
    end: int
    position: int
    records: int = 0
    done: bool = False

    @property
    def remaining(self) -> int:
        """Changelog records still to read (an upper bound: compaction leaves gaps)."""
        return max(0, self.end - self.position)


class Changelog:
    """The changelog topic of one state: `flush` a store's changes to it, `restore` a store from it."""

    def __init__(self, connection: KafkaConnection, topic: str, partitions: int, *,
                 replication_factor: int | None = None, client_id: str = "streamflow-changelog",
                 connect_timeout: float = 60.0, linger_ms: int = 5,
                 transactional: Callable[[], Producer] | None = None) -> None:
        self.connection = connection
        self.topic = topic
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.linger_ms = linger_ms
        self._producer: Producer | None = None
        self._reader: Consumer | None = None
        #: Under exactly-once: the producer of the open transaction (the changelog starts none of its own).
        self._transactional = transactional

    async def start(self) -> None:
        """Connect, and create the topic or check that it fits (`ChangelogError` when it does not)."""
        options = self.connection.client_options(self.client_id)
        if self._transactional is None:
            # a broker that refuses producer ids gets one without idempotence (records carry their source offset)
            producer = RenewableProducer(
                f"changelog {self.topic}",
                lambda *, idempotence=True: AIOKafkaProducer(**options, acks="all", enable_idempotence=idempotence,
                                                             linger_ms=self.linger_ms),
                self.connect_timeout, self.connect_timeout, self.connection.bootstrap_servers)
            await producer.start()
            self._producer = producer.current
        isolation = "read_uncommitted" if self._transactional is None else "read_committed"
        self._reader = await start_client(
            lambda: AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False,
                                     auto_offset_reset="earliest", max_partition_fetch_bytes=RESTORE_FETCH_BYTES,
                                     fetch_max_bytes=4 * RESTORE_FETCH_BYTES, isolation_level=isolation),
            f"changelog {self.topic}", self.connect_timeout, log, self.connection.bootstrap_servers)
        try:
            admin: Admin = AIOKafkaAdminClient(**options)
            await admin.start()
            try:
                await ensure_compacted_topic(admin, self.topic, self.partitions, self.replication_factor)
            finally:
                await admin.close()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for client in (self._producer, self._reader):
            if client is not None:
                await client.stop()
        self._producer = self._reader = None

    async def flush(self, store: StateStore) -> int:
        """Write the store's changes since the last flush and the applied marker; return once all are acked."""
        producer = self._transactional() if self._transactional is not None else self._producer
        if producer is None:
            raise RuntimeError(f"changelog {self.topic} is not started")
        changes = store.take_changes()
        applied = store.logged_through  # with the changes: inputs begun while this flush awaits go in the next
        if not changes:
            return 0
        source = str(store.partition).encode()
        send = producer.send
        acks = [await send(self.topic, c.value, key=CHANGE_PREFIX + c.key, partition=store.partition,
                           headers=[(SOURCE_PARTITION, source), (SOURCE_OFFSET, b"%d" % c.offset)])
                for c in changes]
        acks.append(await send(self.topic, b"%d" % applied, key=APPLIED_KEY, partition=store.partition))
        await asyncio.gather(*acks)
        return len(changes)

    async def restore(self, store: StateStore,
                      on_progress: Callable[[RestoreProgress], None] | None = None) -> RestoreProgress:
        """Fill a fresh ``store`` with its partition's changelog, up to the end offset as of now.

        Per fetch (up to `RESTORE_FETCH_RECORDS`), the changes go to the store in
        one bulk write (`StateStore.restore_many`): the per-record work is a key
        check and a header read. The store is applied up to the last marker; the
        changes logged past it are handed over with `StateStore.restore_logged`."""
        reader = self._reader
        if reader is None:
            raise RuntimeError(f"changelog {self.topic} is not started")
        tp = TopicPartition(self.topic, store.partition)
        reader.assign([tp])
        start = (await reader.beginning_offsets([tp]))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        progress = RestoreProgress(store.name, store.partition, start, end, start)
        logged: dict[bytes, int] = {}
        reader.seek(tp, start)
        while progress.position < end:
            fetched = await reader.getmany(tp, timeout_ms=500, max_records=RESTORE_FETCH_RECORDS)
            records = fetched.get(tp)
            if records:
                if records[-1].offset >= end:
                    records = [r for r in records if r.offset < end]
                self._apply(store, records, logged)
                progress.records += len(records)
            progress.position = await reader.position(tp)
            if on_progress is not None:
                on_progress(progress)
        store.restore_logged(logged)
        progress.done = True
        if on_progress is not None:
            on_progress(progress)
        log.info("restored %s[%d] from %s: %d records, applied up to offset %d", store.name, store.partition,
                 self.topic, progress.records, store.applied)
        return progress

    def _apply(self, store: StateStore, records: Sequence[ConsumerRecord], logged: dict[bytes, int]) -> None:
        """Apply fetched changelog records to ``store``, in order.

        The store's `applied` comes from the markers only: a flush cut short by a
        crash may have logged some changes of its inputs and not others, so their
        offsets say nothing of the inputs before them. The changes past the last
        marker are collected in ``logged`` (key → input offset) instead, and a
        replay of those inputs skips exactly those keys (`StateStore.restore_logged`)."""
        source = (SOURCE_PARTITION, str(store.partition).encode())
        changes: list[tuple[bytes, bytes | None]] = []
        applied = store.applied
        for record in records:
            key = record.key or b""
            if key[:1] == CHANGE_PREFIX:
                headers = record.headers
                # as `flush` writes them: the source partition, then the source offset
                if len(headers) < 2 or headers[0] != source or headers[1][0] != SOURCE_OFFSET:
                    headers = self._checked_headers(store, record, source)
                changes.append((key[1:], record.value))
                offset = int(headers[1][1])
                if offset > applied:
                    logged[key[1:]] = offset
            elif key == APPLIED_KEY:
                marker = int(record.value or b"-1")
                if marker > applied:
                    applied = marker
                    if logged:
                        for k in [k for k, off in logged.items() if off <= applied]:
                            del logged[k]
            else:
                raise ChangelogError(f"{self.topic}[{store.partition}]@{record.offset} is not a streamflow "
                                     f"changelog record (key {key[:20]!r})")
        store.restore_many(changes)
        store.restore_applied(applied)

    def _checked_headers(self, store: StateStore, record: ConsumerRecord,
                         source: tuple[str, bytes]) -> Sequence[tuple[str, bytes]]:
        """A change's headers in `flush`'s order, or `ChangelogError` when another input wrote it."""
        headers: dict[str, bytes] = dict(record.headers)
        if headers.get(SOURCE_PARTITION) != source[1] or SOURCE_OFFSET not in headers:
            raise ChangelogError(
                f"{self.topic}[{store.partition}]@{record.offset} came from source partition "
                f"{headers.get(SOURCE_PARTITION)!r}: the topic is shared with another input")
        return [source, (SOURCE_OFFSET, headers[SOURCE_OFFSET])]
