"""The part of aiokafka the Kafka connector relies on: typed, and every reach-in past its public API.

aiokafka ships no type hints; the protocols below state the public surface
the sink, the source and the state changelog call, so the rest of the package is type-checked against
it. For two things the sink needs aiokafka has no public API, and this module
is the only place that reaches for them:

- `available_partitions`: which partitions of a topic have a leader now
  (the producer's cluster metadata, ``producer.client.cluster``);
- `record_size`: the serialized size of one record in a v2 record batch
  (``aiokafka.record.default_records``, what ``send`` checks against
  ``max_request_size``);
- `raw_append` and `sealed`: appending to a record batch through its C
  builder, positionally, at half the cost of ``BatchBuilder.append``.

And two things the source needs: `heartbeat_in_callback`, group heartbeats
while a rebalance callback runs (the consumer's group coordinator), and
`lean_fetches`, fetched records handed over as aiokafka's record objects
instead of a ``ConsumerRecord`` made for each (the consumer's fetcher). And
one thing the clients' start-up needs: `producer_id_refused`, whether a
producer's ``start()`` failed because the broker gave it no producer id
(the sender's ``_maybe_wait_for_pid``, where aiokafka raises a refused
InitProducerId).

``tests/test_kafka_adapter.py`` fails when aiokafka renames or removes what
this module relies on (including the names and keywords of the public calls).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from traceback import walk_tb
from typing import Any, Protocol, cast

from aiokafka.consumer.fetcher import READ_COMMITTED, FetchResult
from aiokafka.errors import CorruptRecordException, KafkaError
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

#: Kafka record headers as aiokafka takes and gives them.
Headers = Sequence[tuple[str, bytes]]


class BatchBuilder(Protocol):
    """A record batch being filled (``AIOKafkaProducer.create_batch``)."""

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None,
               headers: Headers = ...) -> object | None:
        """Add a record; None when the batch is full (an empty batch takes any record)."""


class Producer(Protocol):
    """The calls the sink makes on an ``AIOKafkaProducer``."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def partitions_for(self, topic: str) -> set[int]: ...
    def create_batch(self) -> BatchBuilder: ...
    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]: ...
    async def send(self, topic: str, value: bytes | None = ..., key: bytes | None = ...,
                   partition: int | None = ..., timestamp_ms: int | None = ...,
                   headers: Headers | None = ...) -> asyncio.Future[Any]: ...


class TransactionalProducer(Producer, Protocol):
    """The transactional calls of an ``AIOKafkaProducer`` created with a ``transactional_id``."""

    async def begin_transaction(self) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
    async def send_offsets_to_transaction(self, offsets: dict[Any, Any], group_id: str) -> None: ...


class TopicPartition(Protocol):
    """aiokafka's ``TopicPartition`` (a named tuple)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    def __hash__(self) -> int: ...


class ConsumerRecord(Protocol):
    """One fetched record (aiokafka's ``ConsumerRecord``)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class Consumer(Protocol):
    """The calls the source makes on an ``AIOKafkaConsumer``."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def subscribe(self, topics: Sequence[str] = ..., pattern: str | None = ..., listener: Any = ...) -> None: ...
    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = ...,
                      max_records: int | None = ...) -> dict[Any, list[ConsumerRecord]]: ...
    def assignment(self) -> set[Any]: ...
    async def commit(self, offsets: dict[Any, Any] | None = ...) -> None: ...
    async def committed(self, partition: Any) -> int | None: ...
    def highwater(self, partition: Any) -> int | None: ...
    # holding newly assigned partitions while keyed state restores
    def pause(self, *partitions: Any) -> None: ...
    def resume(self, *partitions: Any) -> None: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    # manual assignment (the state changelog's restore reader)
    def assign(self, partitions: Sequence[Any]) -> None: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    async def position(self, partition: Any) -> int: ...
    async def beginning_offsets(self, partitions: Sequence[Any]) -> dict[Any, int]: ...
    async def end_offsets(self, partitions: Sequence[Any]) -> dict[Any, int]: ...


class Admin(Protocol):
    """The calls the state changelog makes on an ``AIOKafkaAdminClient``."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def create_topics(self, new_topics: list[Any], timeout_ms: int | None = ...,
                            validate_only: bool = ...) -> Any: ...
    async def list_topics(self) -> list[str]: ...
    async def describe_cluster(self) -> dict[str, Any]: ...
    async def describe_topics(self, topics: list[str] | None = ...) -> list[Any]: ...
    async def describe_configs(self, config_resources: list[Any], include_synonyms: bool = ...) -> list[Any]: ...


def available_partitions(producer: Producer, topic: str) -> list[int]:
    """The partitions of ``topic`` that have a leader now (empty when the metadata does not say)."""
    cluster = cast(Any, producer).client.cluster
    return list(cluster.available_partitions_for_topic(topic) or ())


#: Serialized size in bytes of one record ``(key, value, headers)`` in a v2 record batch.
record_size: Callable[[bytes | None, bytes | None, Headers], int] = \
    DefaultRecordBatchBuilder.estimate_size_in_bytes


#: A record batch's C-level append: (index in the batch, timestamp in ms or None, key, value, headers) ->
#: the record's metadata, or None when the batch is full (an empty batch takes any record).
RawAppend = Callable[[int, int | None, bytes | None, bytes | None, Headers], object | None]
#: Headers of a record that has none (read, never changed, by the C builder).
NO_HEADERS: list[tuple[str, bytes]] = []


def raw_append(builder: BatchBuilder) -> RawAppend:
    """The append of ``builder``'s C record-batch builder, which ``BatchBuilder.append`` wraps in a
    Python call with keywords (~280 ns a record against ~120). The caller numbers the records
    0, 1, 2 ... and hands the batch over `sealed` with their count."""
    append: RawAppend = cast(Any, builder)._builder.append
    return append


def sealed(builder: BatchBuilder, count: int) -> BatchBuilder:
    """``builder`` with its record count set to the ``count`` records appended through `raw_append`
    (the producer numbers an idempotent batch's sequence by it)."""
    cast(Any, builder)._relative_offset = count
    return builder


def heartbeat_in_callback(consumer: Consumer) -> bool:
    """Start the group heartbeat inside ``on_partitions_assigned``; False where aiokafka does not allow it.

    aiokafka stops heartbeating before it rejoins the group and starts again
    only after the assignment callback returns. A keyed-state restore runs in
    that callback, and the coordinator evicts a member that is silent for
    ``session_timeout_ms``: a restore longer than that would lose the
    partitions it restored, get them back, restore again — a loop. The member
    has joined when the callback runs (generation and member id are set), so
    its heartbeats are valid; aiokafka's own start after the callback sees the
    task running and leaves it.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    start = getattr(coordinator, "_start_heartbeat_task", None)
    if not callable(start):
        return False
    start()
    return True


def lean_fetches(consumer: Consumer) -> bool:
    """Make a started consumer's `getmany` return its records without a ``ConsumerRecord`` each.

    aiokafka turns every fetched record into a ``ConsumerRecord`` (a Python
    dataclass of 11 fields, ~0.9 µs) on its way out of ``getmany``; the
    record it was made from already has what the source reads (``offset``,
    ``timestamp``, ``key``, ``value``, ``headers``). This hands those over, the
    records of each record batch taken by one C-level iteration; under
    ``read_committed`` the batches of aborted transactions are skipped as
    aiokafka skips them. Only without deserializers (else nothing changes), and
    only for a consumer drained with ``getmany`` **without** ``max_records`` (and
    no ``max_poll_records``): the fetch position moves per record batch, not per
    record. False where aiokafka's fetcher is not as expected.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    records = getattr(fetcher, "_records", None)
    if type(records) is not OrderedDict:
        return False
    lean = _LeanFetches(records)
    cast(Any, fetcher)._records = lean
    return True


class _LeanFetches(OrderedDict[Any, Any]):
    """The fetcher's per-partition results; each fetched result's records are read lean."""

    def __setitem__(self, tp: Any, result: Any) -> None:
        if type(result) is FetchResult:
            records = result._partition_records
            if records._key_deserializer is None and records._value_deserializer is None:
                result._partition_records = _LeanPartitionRecords(records)
                # its unstarted record generator refers back to it: a cycle that would keep the fetch response
                # (up to max_partition_fetch_bytes) until the cyclic collector runs, which may be never
                records._records_iterator = None
        super().__setitem__(tp, result)


class _LeanPartitionRecords:
    """One partition's fetched records, as aiokafka's ``PartitionRecords`` gives them but without
    a ``ConsumerRecord`` each: CRCs checked, control batches skipped, under ``read_committed``
    the batches of aborted transactions skipped, records before the fetch offset (a compressed or
    compacted batch fetched from its start) left out.

    The iterator does not refer back to this object (it shares only the position cell), so the
    fetch response it reads is freed by reference counting as soon as it is read through, not
    left to the cyclic garbage collector.
    """

    def __init__(self, records: Any) -> None:
        self._position = [records.next_fetch_offset]
        aborted = list(records._aborted_transactions) if records._isolation_level == READ_COMMITTED else None
        self._it = chain.from_iterable(_record_batches(records._records, records._check_crcs, records._tp,
                                                       self._position, aborted))

    @property
    def next_fetch_offset(self) -> int:
        """Where the next fetch starts: moved past each record batch once it is read through."""
        position: int = self._position[0]
        return position

    def __iter__(self) -> Iterator[Any]:
        return self._it

    def __next__(self) -> Any:
        return next(self._it)


def _record_batches(records: Any, check_crcs: bool, tp: Any, position: list[int],
                    aborted: list[tuple[int, int]] | None) -> Iterator[Any]:
    """The record batches of a fetch response (lists where records before ``position[0]`` are left
    out), moving ``position[0]`` past each one.

    ``aborted`` (``read_committed``): the response's aborted transactions as ``(producer id, first
    offset)``, by offset; a transactional batch of a producer whose transaction is aborted at that
    offset is skipped, up to the producer's abort marker (as aiokafka's ``PartitionRecords`` does).
    """
    aborting: set[int] = set()
    while records.has_next():
        batch = records.next_batch()
        if check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {tp}")
        if aborted is not None and batch.producer_id is not None:
            while aborted and aborted[0][1] <= batch.base_offset:
                aborting.add(aborted.pop(0)[0])
            if batch.is_control_batch and _is_abort_marker(batch):
                aborting.discard(batch.producer_id)
            if batch.is_transactional and batch.producer_id in aborting:
                position[0] = batch.next_offset
                continue
        if not getattr(batch, "is_control_batch", False):
            start = position[0]
            if type(batch) is DefaultRecordBatch and batch.base_offset >= start:
                yield batch
            else:
                yield [r for r in batch if r.offset >= start]
        position[0] = batch.next_offset


def _is_abort_marker(control_batch: Any) -> bool:
    """Whether a control batch is a transaction's abort marker (not a commit marker)."""
    try:
        record = next(control_batch)
    except StopIteration:
        raise KafkaError("Control batch did not contain any records") from None
    return bool(ControlRecord.parse(record.key) == ABORT_MARKER)


#: The aiokafka function (``Sender._maybe_wait_for_pid``) a refused InitProducerId is raised through.
WAIT_FOR_PRODUCER_ID = "_maybe_wait_for_pid"


def producer_id_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is a producer's start failing on InitProducerId (the broker gave no producer id).

    aiokafka retries InitProducerId while the error is retriable; what escapes
    its sender's wait for a producer id is the broker's final answer (an
    error code such as UNKNOWN_SERVER_ERROR, or no version of the request it
    accepts). aiokafka raises it as a plain error code, so the place it came
    from is what tells it apart from a failed connection or metadata request.
    """
    return any(frame.f_code.co_name == WAIT_FOR_PRODUCER_ID and "aiokafka" in frame.f_code.co_filename
               for frame, _ in walk_tb(exc.__traceback__))
