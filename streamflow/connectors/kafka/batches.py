"""Record batches: handing a write's records to the producer, one batch per partition (more when full).

``producer.send`` per record costs more than the work around it; the sink
fills aiokafka's record batches itself (``create_batch``/``send_batch``), in
write order per partition. ``send_batch`` waits only while the partition's
previous batch is still queued or the topic's metadata is unknown. If it fails
(e.g. the brokers are unreachable) the partition's remaining records are kept
in the `Attempt` for a later re-send, in order.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.errors import MessageSizeTooLargeError

from ...core.message import Message
from ._aiokafka import NO_HEADERS, BatchBuilder, Producer, RawAppend, raw_append, record_size, sealed
from .delivery import Attempt, SentRecords, SentValues
from .partitioning import Partitioning
from .records import Record, RecordEncoder
from .sink_config import PERMANENT_ERRORS

#: `Partitioning.key_partitions`: the key cache, the function filling it, the write's keyless partition.
_KeyPartitions = tuple[dict[str | bytes, tuple[bytes, int]], Callable[[str | bytes], tuple[bytes, int]],
                       Callable[[], int]]

#: Bytes of a record's key and value below which it cannot exceed the request size (headroom for framing).
_HEADROOM = 512


def _too_large(size: int) -> MessageSizeTooLargeError:
    return MessageSizeTooLargeError(f"the message is {size} bytes when serialized, more than max_request_size")


class RecordBatches:
    """Hands records (or, on the keyless fast path, messages) to a producer as record batches."""

    def __init__(self, encoder: RecordEncoder, partitioning: Partitioning, max_request_size: int) -> None:
        self._encoder = encoder
        self._partitioning = partitioning
        self._limit = max_request_size

    async def send(self, producer: Producer, records: list[Record], alone: bool = False) -> Attempt:
        """Hand ``records`` over, grouped by partition; ``alone`` sends each in its own record batch
        (to find the one a broker rejects as too large)."""
        attempt = Attempt(producer)
        fixed = self._encoder.topic
        by_topic: dict[str, list[Record]] = {fixed: records} if fixed is not None else {}
        if fixed is None:
            for r in records:
                by_topic.setdefault(r[1], []).append(r)
        for topic, recs in by_topic.items():
            try:
                groups = await self._partitioning.split(producer, topic, recs)
            except PERMANENT_ERRORS as exc:
                attempt.reject([r.msg for r in recs], exc)
                continue
            except Exception as exc:  # noqa: BLE001 - no metadata (yet): re-sent later
                attempt.defer(recs, exc)
                continue
            for part, group in groups.items():
                await self._send_partition(attempt, topic, part, group, alone)
        return attempt

    async def _send_partition(self, attempt: Attempt, topic: str, part: int, recs: list[Record],
                              alone: bool) -> None:
        """Append ``recs`` to record batches of one partition and send each as it fills up."""
        create, send_batch = attempt.producer.create_batch, attempt.producer.send_batch
        limit, near = self._limit, self._limit - _HEADROOM
        builder = create()
        members: list[Record] = []
        pos = 0  # records before recs[pos] are in members, handed to the producer, or rejected
        try:
            for pos, r in enumerate(recs):  # noqa: B007 - pos is read after a send failure
                _, _, key, value, headers, ts = r
                if (headers or (len(value) if value else 0) + (len(key) if key else 0) > near) \
                        and (size := record_size(key, value, headers)) > limit:
                    attempt.rejected.append((r.msg, _too_large(size)))
                    continue
                if members and (alone or builder.append(timestamp=ts, key=key, value=value,
                                                        headers=headers) is None):
                    attempt.sent.append(SentRecords(members, await send_batch(builder, topic, partition=part)))
                    builder, members = create(), []
                if not members:
                    builder.append(timestamp=ts, key=key, value=value, headers=headers)  # always fits
                members.append(r)
            pos = len(recs)
            if members:
                attempt.sent.append(SentRecords(members, await send_batch(builder, topic, partition=part)))
        except PERMANENT_ERRORS as exc:
            attempt.reject([r.msg for r in members + recs[pos:]], exc)
        except Exception as exc:  # noqa: BLE001 - any other send failure is retried
            attempt.defer(members + recs[pos:], exc)

    async def send_keyless(self, producer: Producer, msgs: list[Message]) -> Attempt:
        """`send` for keyless structured values of a `RecordEncoder.plain` sink: one (sticky)
        partition, each value encoded and appended at once, no `Record` made."""
        attempt = Attempt(producer)
        topic = self._encoder.topic
        assert topic is not None
        try:
            part = await self._partitioning.keyless(producer, topic)
        except PERMANENT_ERRORS as exc:
            attempt.reject(msgs, exc)
            return attempt
        except Exception as exc:  # noqa: BLE001 - no metadata (yet): re-sent later
            self._defer(attempt, msgs, exc)
            return attempt
        await self._send_values(attempt, topic, part, msgs)
        return attempt

    async def _send_values(self, attempt: Attempt, topic: str, part: int, msgs: list[Message]) -> None:
        """Encode each message's value straight into record batches of one partition; send each as
        it fills up."""
        encode, remake = self._encoder.encode_now, self._encoder.record
        create, send_batch = attempt.producer.create_batch, attempt.producer.send_batch
        limit, near = self._limit, self._limit - _HEADROOM
        builder = create()
        append = raw_append(builder)
        members: list[Message] = []
        add = members.append
        pos = 0  # messages before msgs[pos] are in members, handed to the producer, or rejected
        try:
            for pos, m in enumerate(msgs):  # noqa: B007 - pos is read after a send failure
                try:
                    value = encode(m.value)
                except Exception as exc:  # noqa: BLE001 - e.g. a value orjson cannot serialize
                    attempt.rejected.append((m, exc))
                    continue
                if len(value) > near and (size := record_size(None, value, NO_HEADERS)) > limit:
                    attempt.rejected.append((m, _too_large(size)))
                    continue
                if append(len(members), None, None, value, NO_HEADERS) is None:  # full (so not empty)
                    sent = await send_batch(sealed(builder, len(members)), topic, partition=part)
                    attempt.sent.append(SentValues(members, sent, remake))
                    builder, members = create(), []
                    append, add = raw_append(builder), members.append
                    append(0, None, None, value, NO_HEADERS)  # always fits an empty batch
                add(m)
            pos = len(msgs)
            if members:
                sent = await send_batch(sealed(builder, len(members)), topic, partition=part)
                attempt.sent.append(SentValues(members, sent, remake))
        except PERMANENT_ERRORS as exc:
            attempt.reject(members + msgs[pos:], exc)
        except Exception as exc:  # noqa: BLE001 - any other send failure is retried
            self._defer(attempt, members + msgs[pos:], exc)

    async def send_keyed(self, producer: Producer, msgs: list[Message]) -> Attempt:
        """`send` for structured values with str/bytes keys (or none) of a `RecordEncoder.plain` sink:
        each value encoded and appended to its key's partition's record batch at once, no `Record` made."""
        attempt = Attempt(producer)
        topic = self._encoder.topic
        assert topic is not None
        try:
            known, miss, keyless = await self._partitioning.key_partitions(producer, topic)
        except PERMANENT_ERRORS as exc:
            attempt.reject(msgs, exc)
            return attempt
        except Exception as exc:  # noqa: BLE001 - no metadata (yet): re-sent later
            self._defer(attempt, msgs, exc)
            return attempt
        await self._send_keyed(attempt, topic, (known, miss, keyless), msgs)
        return attempt

    async def _send_keyed(self, attempt: Attempt, topic: str, keys: _KeyPartitions, msgs: list[Message]) -> None:
        """Encode each message's value straight into its partition's record batch; send each batch as it
        fills up, and the rest at the end. Written in one loop on purpose: it runs once per event."""
        known, miss, keyless = keys
        encode, remake = self._encoder.encode_now, self._encoder.record
        create, send_batch = attempt.producer.create_batch, attempt.producer.send_batch
        limit, near = self._limit, self._limit - _HEADROOM
        open_: dict[int, tuple[BatchBuilder, list[Message], RawAppend]] = {}  # partition -> its batch
        pos = 0  # messages before msgs[pos] are in open_, handed to the producer, or rejected
        try:
            for pos, m in enumerate(msgs):  # noqa: B007 - pos is read after a send failure
                key = m.key
                if key is None:
                    k, part = None, keyless()
                else:
                    k, part = known.get(key) or miss(key)
                try:
                    value = encode(m.value)
                except Exception as exc:  # noqa: BLE001 - e.g. a value orjson cannot serialize
                    attempt.rejected.append((m, exc))
                    continue
                if len(value) > near and (size := record_size(k, value, NO_HEADERS)) > limit:
                    attempt.rejected.append((m, _too_large(size)))
                    continue
                slot = open_.get(part)
                if slot is None:
                    builder = create()
                    slot = open_[part] = (builder, [], raw_append(builder))
                members = slot[1]
                if slot[2](len(members), None, k, value, NO_HEADERS) is None:  # full (so not empty)
                    sent = await send_batch(sealed(slot[0], len(members)), topic, partition=part)
                    attempt.sent.append(SentValues(members, sent, remake))
                    builder = create()
                    slot = open_[part] = (builder, [], raw_append(builder))
                    slot[2](0, None, k, value, NO_HEADERS)  # always fits an empty batch
                slot[1].append(m)
            pos = len(msgs)
            while open_:
                part, (builder, members, _) = open_.popitem()
                sent = await send_batch(sealed(builder, len(members)), topic, partition=part)
                attempt.sent.append(SentValues(members, sent, remake))
        except PERMANENT_ERRORS as exc:
            attempt.reject([m for _, members, _ in open_.values() for m in members] + msgs[pos:], exc)
        except Exception as exc:  # noqa: BLE001 - any other send failure is retried
            self._defer(attempt, [m for _, members, _ in open_.values() for m in members] + msgs[pos:], exc)

    def _defer(self, attempt: Attempt, msgs: list[Message], error: BaseException) -> None:
        """Keep ``msgs`` for a re-send, as records (those that have none are rejected)."""
        records, rejected = self._encoder.records_each(msgs)
        attempt.defer(records, error)
        attempt.rejected.extend(rejected)
