"""What the Kafka connector relies on from aiokafka (`streamflow.connectors.kafka._aiokafka`).

These fail when aiokafka renames or removes something the connector uses:
the public calls typed by the adapter's protocols (names and keywords), and
the two reach-ins past its public API, checked against a real broker.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder as AiokafkaBatchBuilder

from streamflow.connectors.kafka import _aiokafka

#: adapter protocol -> the aiokafka class it describes
SURFACES = [
    (_aiokafka.Producer, AIOKafkaProducer),
    (_aiokafka.TransactionalProducer, AIOKafkaProducer),
    (_aiokafka.Consumer, AIOKafkaConsumer),
    (_aiokafka.BatchBuilder, AiokafkaBatchBuilder),
    (_aiokafka.Admin, AIOKafkaAdminClient),
]


def _members(protocol: type) -> dict[str, Any]:
    return {name: value for name, value in vars(protocol).items()
            if callable(value) and not name.startswith("_")}


@pytest.mark.parametrize("protocol, cls", SURFACES, ids=lambda p: getattr(p, "__name__", str(p)))
def test_every_call_of_the_protocols_exists_with_its_keywords(protocol, cls):
    members = _members(protocol)
    assert members, protocol
    for name, ours in members.items():
        theirs = getattr(cls, name, None)
        assert callable(theirs), f"aiokafka {cls.__name__} has no {name}()"
        assert inspect.iscoroutinefunction(theirs) == inspect.iscoroutinefunction(ours), \
            f"{cls.__name__}.{name}: async-ness changed"
        accepted = inspect.signature(theirs).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        for param in list(inspect.signature(ours).parameters.values())[1:]:
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
                assert param.name in accepted or takes_any, f"{cls.__name__}.{name}() lost `{param.name}`"


def test_the_producer_takes_our_partitioner():
    assert "partitioner" in inspect.signature(AIOKafkaProducer).parameters
    part = DefaultPartitioner()
    assert part(b"user-1", [0, 1, 2], [0, 1, 2]) in (0, 1, 2)


def test_record_size_counts_key_value_and_headers():
    size = _aiokafka.record_size
    base = size(None, b"x" * 100, [])
    assert base > 100
    assert size(b"k" * 10, b"x" * 100, []) >= base + 10
    assert size(None, b"x" * 100, [("h", b"v" * 20)]) >= base + 21
    assert size(None, None, []) < base


@pytest.mark.kafka
async def test_available_partitions_from_the_producers_metadata(kafka):
    topic = await kafka.topic("adapter", 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        assert _aiokafka.available_partitions(producer, topic) == []  # no metadata asked for yet
        assert await producer.partitions_for(topic) == {0, 1, 2}
        assert sorted(_aiokafka.available_partitions(producer, topic)) == [0, 1, 2]
    finally:
        await producer.stop()


@pytest.mark.kafka
async def test_record_size_is_what_the_producer_checks_against_max_request_size(kafka):
    topic = await kafka.topic("adapter-size", 1)
    limit = 2048
    fits = max(n for n in range(limit) if _aiokafka.record_size(None, b"x" * n, []) <= limit)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, max_request_size=limit)
    await producer.start()
    try:
        await (await producer.send(topic, b"x" * fits))
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send(topic, b"x" * (fits + 1))
    finally:
        await producer.stop()


@pytest.mark.kafka
async def test_raw_append_and_sealed_batches_are_accepted_in_sequence_by_an_idempotent_producer(kafka):
    topic = await kafka.topic("adapter-raw", 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = []
        for first, count in ((0, 3), (3, 2), (5, 4)):  # each batch's sequence follows the last one's count
            batch = producer.create_batch()
            append = _aiokafka.raw_append(batch)
            for i in range(count):
                assert append(i, None, b"k%d" % (first + i), b"v%d" % (first + i), _aiokafka.NO_HEADERS) is not None
            futures.append(await producer.send_batch(_aiokafka.sealed(batch, count), topic, partition=0))
        for f in futures:
            await f
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    records = [r for rs in got.values() for r in rs]
    assert [(r.offset, r.key, r.value) for r in records] == [(i, b"k%d" % i, b"v%d" % i) for i in range(9)]


async def _read_lean(bootstrap: str, topic: str, start: int, want: int,
                     **options: Any) -> tuple[list[Any], int]:
    """At least ``want`` records of partition 0 from offset ``start`` through a lean consumer, and its
    position after them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        assert _aiokafka.lean_fetches(consumer)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        records: list[Any] = []
        while len(records) < want:
            got = await consumer.getmany(timeout_ms=10_000)
            assert got, "no records fetched"
            records += got[tp]
        return records, await consumer.position(tp)
    finally:
        await consumer.stop()


@pytest.mark.kafka
async def test_lean_fetches_hand_over_records_from_the_fetch_offset_skipping_control_batches(kafka):
    topic = await kafka.topic("adapter-lean", 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"{topic}-txn")
    await producer.start()
    try:
        async with producer.transaction():  # one record batch of 10, then a commit marker (a control batch)
            batch = producer.create_batch()
            for i in range(10):
                batch.append(key=b"k%d" % i, value=b"v%d" % i, timestamp=None, headers=[("h", b"%d" % i)])
            await (await producer.send_batch(batch, topic, partition=0))
        async with producer.transaction():  # a second transaction: one record and its marker
            await (await producer.send(topic, b"after", key=b"k10", partition=0))
    finally:
        await producer.stop()
    # from inside the first record batch: records 0-3 must not come back
    records, position = await _read_lean(kafka.bootstrap, topic, 4, 7)
    assert [r.value for r in records] == [b"v%d" % i for i in range(4, 10)] + [b"after"]
    assert [r.offset for r in records[:6]] == list(range(4, 10))  # offset 10 is the first commit marker
    assert records[-1].offset == 11 and position == 13  # past the second transaction's marker
    assert records[0].key == b"k4" and list(records[0].headers) == [("h", b"4")] and records[0].timestamp > 0
    assert type(records[0]).__name__ != "ConsumerRecord"  # the records as fetched


@pytest.mark.kafka
async def test_lean_fetches_read_committed_skip_aborted_transactions(kafka):
    topic = await kafka.topic("adapter-lean-committed", 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"{topic}-txn")
    await producer.start()
    try:
        for name, count, commit in (("a", 3, True), ("b", 4, False), ("c", 2, True)):
            await producer.begin_transaction()
            for i in range(count):
                await (await producer.send(topic, b"%s%d" % (name.encode(), i), partition=0))
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()
    records, position = await _read_lean(kafka.bootstrap, topic, 0, 5, isolation_level="read_committed")
    assert [r.value for r in records] == [b"a0", b"a1", b"a2", b"c0", b"c1"]  # the aborted b* left out
    assert position == 3 + 1 + 4 + 1 + 2 + 1  # past the records and the three markers
    assert type(records[0]).__name__ != "ConsumerRecord"  # the records as fetched


@pytest.mark.kafka
async def test_lean_fetches_leave_no_fetch_response_to_the_cyclic_collector(kafka):
    """A pipeline allocates and frees as much as it allocates, so the cyclic GC may never run: every
    fetch response must be freed by reference counting (it was kept in a cycle: 1 MiB per fetch)."""
    import gc

    from aiokafka.consumer.fetcher import PartitionRecords

    topic = await kafka.topic("adapter-lean-gc", 1)
    await kafka.produce(topic, [(None, {"i": i, "pad": "x" * 200}, 0) for i in range(3000)])
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=16 * 1024)  # many small fetches
    await consumer.start()
    gc.collect()
    gc.disable()
    try:
        assert _aiokafka.lean_fetches(consumer)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = 0
        while got < 3000:
            got += sum(len(records) for records in (await consumer.getmany(timeout_ms=10_000)).values())
        alive = sum(1 for o in gc.get_objects() if isinstance(o, PartitionRecords))
    finally:
        gc.enable()
        await consumer.stop()
    assert alive <= 2  # the one being fetched now, at most; not one per fetch (~40 here)
