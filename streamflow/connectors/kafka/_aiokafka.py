"""The part of aiokafka the Kafka connector relies on: typed, and every reach-in past its public API.

aiokafka ships no type hints; the protocols below state the public surface
the sink, the source and the state changelog call, so the rest of the package is type-checked against
it. For two things the sink needs aiokafka has no public API, and this module
is the only place that reaches for them:

- `available_partitions`: which partitions of a topic have a leader now
  (the producer's cluster metadata, ``producer.client.cluster``);
- `record_size`: the serialized size of one record in a v2 record batch
  (``aiokafka.record.default_records``, what ``send`` checks against
  ``max_request_size``).

And one thing the source needs: `heartbeat_in_callback`, group heartbeats
while a rebalance callback runs (the consumer's group coordinator). And one
thing the clients' start-up needs: `producer_id_refused`, whether a
producer's ``start()`` failed because the broker gave it no producer id
(the sender's ``_maybe_wait_for_pid``, where aiokafka raises a refused
InitProducerId).

``tests/test_kafka_adapter.py`` fails when aiokafka renames or removes what
this module relies on (including the names and keywords of the public calls).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from traceback import walk_tb
from typing import Any, Protocol, cast

from aiokafka.record.default_records import DefaultRecordBatchBuilder

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
