"""Kafka sink: an idempotent producer that acknowledges a batch once the brokers have it.

`write` appends every message of a batch to the producer's accumulator (that
is all `send` does) and hands the delivery futures to a task; up to
``max_in_flight`` batches are delivered at once, so consecutive batches
pipeline. A batch is acked only when every one of its messages is on the
brokers (``acks: all``). A delivery that fails after aiokafka's own retries
(a broker down for longer than the request timeout) is sent again with
exponential backoff until it succeeds: nothing is dropped, nothing acked
early. Only errors no retry can fix (a message too large, an invalid topic,
a denied authorization) go to the sink's ``on_error`` policy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from operator import itemgetter
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka import codec as kafka_codecs
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTopicError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from pydantic import Field, field_validator, model_validator

from ...codecs import CodecName, get_codec
from ...core.batch import Batch
from ...core.errors import ErrorHandler, ErrorPolicy, PipelineFailed
from ...core.message import Message
from ...core.refs import FunctionRef
from ...core.registry import SINKS
from ...core.stage import ComponentConfig, Sink, StageContext
from ...transforms.fields import path_getter
from .logs import quiet_repeats
from .security import KafkaConnection, start_client

log = logging.getLogger("streamflow.kafka.sink")

#: Delivery errors that no retry can fix: the message goes to the sink's on_error policy.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError,
    TopicAuthorizationFailedError, ClusterAuthorizationFailedError,
)

#: Errors after which the producer itself is unusable: it is replaced by a new one, then re-sent.
BROKEN_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber, ProducerFenced, InvalidProducerEpoch, InvalidProducerIdMapping,
    UnknownProducerId, ProducerClosed,
)

#: Broker rejections of a record batch for its size: its records are re-sent one by one to find the culprit.
SIZE_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
)

#: Most keys whose partition is remembered per topic (the cache restarts beyond).
_KEY_CACHE_SIZE = 100_000

_size = DefaultRecordBatchBuilder.estimate_size_in_bytes

_COMPRESSION_AVAILABLE: dict[str, Callable[[], bool]] = {
    "gzip": kafka_codecs.has_gzip,
    "snappy": kafka_codecs.has_snappy,
    "lz4": kafka_codecs.has_lz4,
    "zstd": kafka_codecs.has_zstd,
}


class KafkaSinkConfig(KafkaConnection, ComponentConfig):
    """Keys of ``type: kafka`` sinks."""

    topic: str | None = Field(None, description="topic every message goes to")
    topic_field: str | None = Field(None, description="dotted path of the value field naming the topic")
    topic_fn: FunctionRef | None = Field(None, description="`module:function(message) -> topic`")
    key_field: str | None = Field(None, description="dotted path of the value field used as the key "
                                                    "(default: the message's own key)")
    key_fn: FunctionRef | None = Field(None, description="`module:function(message) -> key`")
    headers: dict[str, str] = Field(default_factory=dict, description="static headers added to each message")
    pass_headers: bool = Field(True, description="write each message's own headers too")
    keep_timestamp: bool = Field(False, description="write the source timestamp instead of the send time")
    codec: CodecName = Field("json", description="how values are encoded; bytes values are written as they are")
    dead_letter_format: Literal["auto", "raw", "record"] = Field(
        "auto", description="raw: write the original key/value bytes and the error headers; record: "
                            "write the dead-letter record encoded with `codec`; auto: raw when this "
                            "sink is the pipeline's dead-letter sink")
    acks: Literal["all", 1, 0] = Field("all", description="broker acknowledgement a write waits for")
    enable_idempotence: bool = Field(True, description="no duplicates from the producer's own retries")
    linger_ms: int = Field(5, ge=0, description="how long the producer waits to fill a batch")
    max_batch_size: int = Field(256 * 1024, ge=1024, description="bytes per partition batch on the wire")
    max_request_size: int = Field(2**20, ge=1024, description="largest request (and message) sent")
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        None, description="gzip always; snappy, lz4 and zstd need the cramjam package")
    max_in_flight: int = Field(4, ge=1, description="pipeline batches awaiting broker acks at once")
    retry_backoff: float = Field(0.5, gt=0, description="first delay before re-sending failed messages")
    max_retry_backoff: float = Field(30.0, gt=0, description="cap of that delay")
    connect_timeout: float = Field(60.0, gt=0, description="seconds to keep retrying the first connection")
    on_error: ErrorPolicy = Field(
        default_factory=ErrorPolicy,
        description="what to do with a message that cannot be encoded or that the brokers reject for "
                    "good (too large, invalid topic)")

    @field_validator("topic_field", "key_field")
    @classmethod
    def _valid_path(cls, v: str | None) -> str | None:
        if v is not None:
            path_getter(v)  # raises ValueError on a malformed dotted path
        return v

    @field_validator("compression_type")
    @classmethod
    def _compression_installed(cls, v: str | None) -> str | None:
        if v is not None and not _COMPRESSION_AVAILABLE[v]():
            raise ValueError(f"compression_type {v!r} needs the cramjam package (pip install cramjam); "
                             "gzip needs nothing")
        return v

    @model_validator(mode="after")
    def _check(self) -> KafkaSinkConfig:
        given = [k for k in ("topic", "topic_field", "topic_fn") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of `topic`, `topic_field` or `topic_fn`")
        if self.key_field and self.key_fn:
            raise ValueError("give at most one of `key_field` or `key_fn`")
        if self.enable_idempotence and self.acks != "all":
            raise ValueError("enable_idempotence needs acks: all")
        return self


def _field(path: str) -> Callable[[Message], Any]:
    """Getter of a dotted field path in a message's (mapping) value: None where it is missing."""
    get = path_getter(path)
    return lambda msg: get(msg.value)


def _to_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


_tuple_new = tuple.__new__


class _Record(tuple):
    """One message ready to send: ``(msg, topic, key, value, headers, timestamp_ms)``.

    A tuple: built in one C call on the hot path and unpacked in the send loop.
    """

    __slots__ = ()

    def __new__(cls, msg: Message, topic: str, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes]], timestamp_ms: int | None) -> _Record:
        return _tuple_new(cls, (msg, topic, key, value, headers, timestamp_ms))

    msg = property(itemgetter(0))
    topic = property(itemgetter(1))
    key = property(itemgetter(2))
    value = property(itemgetter(3))
    headers = property(itemgetter(4))
    timestamp_ms = property(itemgetter(5))


@SINKS.register("kafka")
class KafkaSink(Sink[KafkaSinkConfig]):
    """Writes messages to Kafka with ``acks: all`` and idempotence, pipelining batches.

    The key is ``key_fn(message)``, the value at ``key_field``, or the
    message's own key; headers are the message's (``pass_headers``) plus the
    static ``headers``. As the dead-letter sink it writes each failed event's
    original bytes with the error, stage and source position as headers.
    """

    acks_itself = True

    def setup(self) -> None:
        c = self.config
        codec = get_codec(c.codec)
        self._encode = codec.encode
        #: encoder for values copied into a record batch at once (no exact-size copy needed)
        self._encode_now = getattr(codec, "encode_transient", codec.encode)
        self._static_headers = [(k, v.encode()) for k, v in c.headers.items()]
        if c.topic is not None:
            fixed = c.topic
            self._topic_of: Callable[[Message], Any] = lambda m: fixed
        elif c.topic_field is not None:
            self._topic_of = _field(c.topic_field)
        else:
            self._topic_of = c.topic_fn  # type: ignore[assignment]
        if c.key_fn is not None:
            self._key_of: Callable[[Message], Any] = c.key_fn
        elif c.key_field is not None:
            self._key_of = _field(c.key_field)
        else:
            self._key_of = lambda m: m.key
        self._raw_out = c.dead_letter_format == "raw"
        self.errors = ErrorHandler(self.name, c.on_error)
        self._producer: Any = None
        self._new_producer: Callable[[], Any] = AIOKafkaProducer
        self._renewing = asyncio.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._retrying = 0
        self._turn = -1  # keyless writes rotate over the partitions
        self._key_partitions: dict[str, tuple[tuple[int, ...], dict[bytes, int]]] = {}

    # -- lifecycle ------------------------------------------------------------
    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        c = self.config
        self.errors = ctx.error_handler(c.on_error)
        quiet_repeats()
        if c.dead_letter_format == "auto":
            self._raw_out = ctx.stats.kind == "dead_letter"
        self._slots = asyncio.Semaphore(c.max_in_flight)
        options = c.client_options(f"streamflow-{ctx.pipeline}-{self.name}")
        options.update(
            acks=c.acks,
            enable_idempotence=c.enable_idempotence,
            linger_ms=c.linger_ms,
            max_batch_size=c.max_batch_size,
            max_request_size=c.max_request_size,
            compression_type=c.compression_type,
        )
        self._new_producer = lambda: AIOKafkaProducer(**options)
        self._producer = await start_client(self._new_producer, f"kafka sink {self.name}",
                                            c.connect_timeout, log)

    async def close(self) -> None:
        for task in list(self._inflight):  # only left after an abort: those batches stay unacked
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.config.request_timeout_ms / 1000 + 5)
            except TimeoutError:
                log.warning("kafka sink %s: producer did not stop in time", self.name)

    @property
    def ready(self) -> bool:
        """Connected and not currently re-sending failed deliveries."""
        return self._producer is not None and not self._retrying and self._failure is None

    # -- writing -----------------------------------------------------------------
    async def write(self, batch: Batch) -> None:
        self._raise_failure()
        if self._plain() and self._keyless(batch.messages):
            await self._dispatch(batch, lambda: self._send_keyless(batch))
            return
        try:
            records = self._records(batch.messages)
        except Exception:  # noqa: BLE001 - one bad message: apply on_error to each
            records = await self._records_each(batch)
        if not records:
            batch.ack()
            return
        await self._dispatch(batch, lambda: self._send(records))

    async def _dispatch(self, batch: Batch, send: Callable[[], Awaitable[Any]]) -> None:
        """Take an in-flight slot, hand the batch to the producer, and ack it in a task once delivered."""
        assert self._slots is not None
        await self._slots.acquire()
        try:
            attempt = await send()
        except BaseException:
            self._slots.release()
            raise
        task = asyncio.create_task(self._deliver(batch, attempt), name=f"{self.name}-delivery")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def flush(self) -> None:
        """Wait until every batch written so far is on the brokers (and acked)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _plain(self) -> bool:
        """Whether records can take the fast path: fixed topic, the message's own key, no static
        headers, send time as timestamp, not raw dead-letter output."""
        c = self.config
        return (c.topic is not None and c.key_fn is None and c.key_field is None and not self._static_headers
                and not c.keep_timestamp and not self._raw_out)

    def _keyless(self, msgs: list[Message]) -> bool:
        """Whether every message is a structured value without key (nor headers to pass): then
        `_send_keyless` encodes each straight into the producer's record batch, no `_Record`s."""
        if not msgs:
            return False
        pass_headers = self.config.pass_headers
        for m in msgs:
            if m.key is not None or (pass_headers and m.headers):
                return False
            tv = type(m.value)
            if tv is not dict and tv is not list:
                return False
        return True

    async def _send_keyless(self, batch: Batch) -> _Attempt:
        """`_send` for a `_keyless` batch of a `_plain` sink: one (sticky) partition, each value
        encoded and appended at once; the sent groups hold messages (records are made again from
        them only if a delivery fails). A value that cannot be encoded goes to ``on_error``."""
        msgs = batch.messages
        producer = self._producer
        attempt = _Attempt(producer)
        sent = attempt.sent
        topic = self.config.topic
        assert topic is not None
        try:
            parts = await producer.partitions_for(topic)
        except PERMANENT_ERRORS as exc:
            sent.extend(((m,), _failed(exc)) for m in msgs)
            return attempt
        except Exception as exc:  # noqa: BLE001 - no metadata (yet): re-sent later
            attempt.unsent.extend(await self._records_each(batch))
            attempt.error = exc
            return attempt
        available = list(producer.client.cluster.available_partitions_for_topic(topic) or ())
        part = self._sticky(available or list(parts))
        encode = self._encode_now
        create, send_batch = producer.create_batch, producer.send_batch
        limit = self.config.max_request_size
        near = limit - 512
        builder = create()
        append = builder.append
        members: list[Message] = []
        add = members.append
        pos = 0  # messages before msgs[pos] are in members, handed to the producer, or handled
        try:
            for pos, m in enumerate(msgs):  # noqa: B007 - pos is read after a send failure
                try:
                    value = encode(m.value)
                except Exception as exc:  # noqa: BLE001 - e.g. a value orjson cannot serialize
                    await self.errors.handle(m, exc, None, batch)  # skipped, dead-lettered or raises
                    continue
                if len(value) > near and _size(None, value, []) > limit:
                    if members:
                        sent.append((members, await send_batch(builder, topic, partition=part)))
                        builder = create()
                        append = builder.append
                        members = []
                        add = members.append
                    sent.append(((m,), _failed(MessageSizeTooLargeError(
                        f"the message is {_size(None, value, [])} bytes when serialized, more "
                        "than max_request_size"))))
                    continue
                if append(timestamp=None, key=None, value=value) is None:
                    if members:
                        sent.append((members, await send_batch(builder, topic, partition=part)))
                        builder = create()
                        append = builder.append
                        members = []
                        add = members.append
                    append(timestamp=None, key=None, value=value)  # the 1st fits
                add(m)
            pos = len(msgs)
            if members:
                sent.append((members, await send_batch(builder, topic, partition=part)))
        except PERMANENT_ERRORS as exc:
            sent.extend(((m,), _failed(exc)) for m in members + msgs[pos:])
        except Exception as exc:  # noqa: BLE001 - any other send failure is retried
            attempt.unsent.extend(await self._records_each(batch.derive(members + msgs[pos:])))
            attempt.error = exc
        return attempt

    def _as_records(self, items: Sequence[Any]) -> list[_Record]:
        """Records of a sent group: `_send_keyless` groups hold messages, `_send` groups records."""
        return [r if isinstance(r, _Record) else self._record(r) for r in items]

    def _records(self, msgs: list[Message]) -> list[_Record]:
        """The records of a batch's messages; structured values, bytes/str/no keys and no headers to
        pass take a fast path, anything else goes through `_record`."""
        if not self._plain():
            return [self._record(m) for m in msgs]
        topic, encode, record = self.config.topic, self._encode, self._record
        pass_headers = self.config.pass_headers
        out: list[_Record] = []
        append = out.append
        for m in msgs:
            v, k = m.value, m.key
            tv = type(v)
            if (tv is dict or tv is list) and not (pass_headers and m.headers):
                if k is None or type(k) is bytes:
                    append(_tuple_new(_Record, (m, topic, k, encode(v), [], None)))
                    continue
                if type(k) is str:
                    append(_tuple_new(_Record, (m, topic, k.encode(), encode(v), [], None)))
                    continue
            append(record(m))
        return out

    def _record(self, m: Message) -> _Record:
        if self._raw_out and m.raw is not None:
            raw = m.raw
            value: bytes | None = raw.encode() if isinstance(raw, str) else raw
            headers = list(m.headers or ())
        else:
            v = m.value
            if v is None:
                value = None
            elif isinstance(v, (bytes, bytearray, memoryview)):
                value = bytes(v)
            else:
                value = self._encode(v)
            headers = list(m.headers or ()) if (self.config.pass_headers or self._raw_out) else []
        if headers:
            headers = [(str(k), _to_bytes(hv) or b"") for k, hv in headers]
        headers += self._static_headers
        key = _to_bytes(self._key_of(m))
        if value is None and key is None:
            raise ValueError("a Kafka message needs a value or a key; this one has neither")
        topic = self._topic_of(m)
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        ts = int(m.timestamp * 1000) if self.config.keep_timestamp and m.timestamp is not None else None
        return _Record(m, topic, key, value, headers, ts)

    async def _records_each(self, batch: Batch) -> list[_Record]:
        records = []
        for m in batch.messages:
            try:
                records.append(self._record(m))
            except Exception as exc:  # noqa: BLE001 - user key/topic functions may raise anything
                await self.errors.handle(m, exc, None, batch)  # skipped, dead-lettered or raises
        return records

    async def _partitioned(self, producer: Any, records: list[_Record],
                           attempt: _Attempt) -> dict[tuple[str, int], list[_Record]]:
        """Records by (topic, partition), in write order within each partition.

        Keyed records get the partition `producer.send` would choose (the
        producer's partitioner over the topic's partitions; murmur2 results are
        cached per key while the partition list is unchanged); keyless records
        of one write all go to one partition (sticky), rotating between writes.
        Records of a topic whose metadata is unavailable go to ``attempt``.
        """
        if self.config.topic is not None:
            by_topic = {self.config.topic: records}
        else:
            by_topic = {}
            for r in records:
                by_topic.setdefault(r[1], []).append(r)
        groups: dict[tuple[str, int], list[_Record]] = {}
        for topic, recs in by_topic.items():
            try:
                parts = await producer.partitions_for(topic)
            except PERMANENT_ERRORS as exc:
                for r in recs:
                    attempt.sent.append(((r,), _failed(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - no metadata (yet): re-sent later
                attempt.unsent.extend(recs)
                attempt.error = exc
                continue
            all_parts = list(parts)
            available = list(producer.client.cluster.available_partitions_for_topic(topic) or ())
            keys = [r[2] for r in recs]
            if keys.count(None) == len(keys):  # keyless write: one partition
                groups.setdefault((topic, self._sticky(available or all_parts)), []).extend(recs)
                continue
            sticky: int | None = None
            choose = self._chooser(producer, topic, all_parts, available)
            for r, key in zip(recs, keys, strict=True):
                if key is None:
                    if sticky is None:
                        sticky = self._sticky(available or all_parts)
                    part = sticky
                else:
                    part = choose(key)
                group = groups.get((topic, part))
                if group is None:
                    groups[(topic, part)] = [r]
                else:
                    group.append(r)
        return groups

    def _sticky(self, parts: list[int]) -> int:
        """The partition of a write's keyless records: the next one of ``parts`` in turn."""
        self._turn += 1
        return parts[self._turn % len(parts)]

    def _chooser(self, producer: Any, topic: str, all_parts: list[int],
                 available: list[int]) -> Callable[[bytes], int]:
        """key -> partition, exactly as `producer.send` chooses it (cached for the default partitioner)."""
        partitioner = producer._partitioner
        if not isinstance(partitioner, DefaultPartitioner):
            return lambda key: partitioner(key, all_parts, available)
        ident = tuple(all_parts)
        known = self._key_partitions.get(topic)
        if known is None or known[0] != ident or len(known[1]) > _KEY_CACHE_SIZE:
            known = self._key_partitions[topic] = (ident, {})
        cache = known[1]

        def choose(key: bytes) -> int:
            part = cache.get(key)
            if part is None:
                part = cache[key] = partitioner(key, all_parts, available)
            return part
        return choose

    async def _send(self, records: list[_Record], alone: bool = False) -> _Attempt:
        """Hand records to the producer as one record batch per partition (more when one fills up).

        ``send_batch`` waits only while the partition's previous batch is
        still queued or the topic's metadata is unknown; if it fails (e.g. the
        brokers are unreachable) that partition's remaining records are kept
        for a later re-send, in order. ``alone`` sends each record in its own
        batch (to find the one a broker rejects as too large).
        """
        producer = self._producer
        attempt = _Attempt(producer)
        groups = await self._partitioned(producer, records, attempt)
        create, send_batch = producer.create_batch, producer.send_batch
        limit = self.config.max_request_size
        sent = attempt.sent
        for (topic, part), recs in groups.items():
            done = 0  # records of recs handed to the producer (or failed for good)
            try:
                builder, members = create(), []
                for r in recs:
                    _, _, key, value, headers, ts = r
                    if (headers or (len(value) if value else 0) + (len(key) if key else 0) > limit - 512) \
                            and _size(key, value, headers) > limit:
                        if members:
                            sent.append((members, await send_batch(builder, topic, partition=part)))
                            done += len(members)
                            builder, members = create(), []
                        sent.append(((r,), _failed(MessageSizeTooLargeError(
                            f"the message is {_size(key, value, headers)} bytes when serialized, more "
                            "than max_request_size"))))
                        done += 1
                        continue
                    if members and (alone or builder.append(timestamp=ts, key=key, value=value,
                                                            headers=headers) is None):
                        sent.append((members, await send_batch(builder, topic, partition=part)))
                        done += len(members)
                        builder, members = create(), []
                    if not members:
                        builder.append(timestamp=ts, key=key, value=value, headers=headers)  # 1st fits
                    members.append(r)
                if members:
                    sent.append((members, await send_batch(builder, topic, partition=part)))
                    done += len(members)
            except PERMANENT_ERRORS as exc:
                for r in recs[done:]:
                    sent.append(((r,), _failed(exc)))
            except Exception as exc:  # noqa: BLE001 - any other send failure is retried
                attempt.unsent.extend(recs[done:])
                attempt.error = exc
        return attempt

    async def _deliver(self, batch: Batch, attempt: _Attempt) -> None:
        """Await a batch's deliveries, re-send failures with backoff, then ack the batch."""
        tries = 0
        try:
            while True:
                results = await asyncio.gather(*(f for _, f in attempt.sent), return_exceptions=True)
                failed = attempt.unsent
                error = attempt.error
                isolate: list[_Record] = []
                for (recs, _), result in zip(attempt.sent, results, strict=True):
                    if isinstance(result, SIZE_ERRORS) and len(recs) > 1:
                        isolate.extend(self._as_records(recs))  # the broker refused the record batch
                    elif isinstance(result, PERMANENT_ERRORS):
                        for record in recs:
                            msg = record if isinstance(record, Message) else record[0]
                            await self.errors.handle(msg, result, None, batch)
                    elif isinstance(result, BaseException):
                        failed.extend(self._as_records(recs))
                        error = result
                if not failed:
                    if not isolate:
                        break
                    attempt = await self._send(isolate, alone=True)
                    continue
                tries += 1
                if tries == 1:
                    self._retrying += 1
                if self.ctx is not None:
                    self.ctx.stats.retries += 1
                if isinstance(error, BROKEN_PRODUCER_ERRORS):
                    await self._renew(attempt.producer, error)
                cap = min(self.config.max_retry_backoff, self.config.retry_backoff * 2 ** (tries - 1))
                delay = random.uniform(cap / 2, cap)
                log.warning("kafka sink %s: %d messages not delivered (%s: %s); re-sending in %.1fs "
                            "(attempt %d)", self.name, len(failed), type(error).__name__, error, delay, tries)
                await asyncio.sleep(delay)
                attempt = await self._send(failed + isolate, alone=bool(isolate))
            if tries:
                log.info("kafka sink %s: delivered after %d re-sends", self.name, tries)
            batch.ack()
        except PipelineFailed as exc:  # the on_error policy is `fail`: stop at the next write/flush
            self._failure = self._failure or exc
        finally:
            if tries:
                self._retrying -= 1
            assert self._slots is not None
            self._slots.release()

    async def _renew(self, broken: Any, error: BaseException) -> None:
        """Replace a producer whose idempotence state is broken (new producer id, fresh sequences).

        aiokafka's sender stops for good on e.g. an out-of-order sequence after a
        broker restart; every delivery task that sees it calls this, the first
        one replaces the producer and the others find it replaced.
        """
        async with self._renewing:
            if self._producer is not broken:
                return
            log.warning("kafka sink %s: producer unusable (%s: %s); starting a new one", self.name,
                        type(error).__name__, error)
            self._producer = await start_client(self._new_producer, f"kafka sink {self.name}", math.inf, log)
        try:
            await asyncio.wait_for(broken.stop(), 5)
        except Exception as exc:  # noqa: BLE001 - it is broken already; its records are re-sent
            log.debug("kafka sink %s: stopping the broken producer: %s", self.name, exc)


class _Attempt:
    """One pass of sending records: which producer, the delivery futures, what could not be sent.

    ``sent`` holds (records of one record batch, its delivery future).
    """

    __slots__ = ("producer", "sent", "unsent", "error")

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.sent: list[tuple[Sequence[_Record] | Sequence[Message], Any]] = []
        self.unsent: list[_Record] = []
        self.error: BaseException | None = None


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    """A delivery future that already failed with ``exc``."""
    fut = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut
