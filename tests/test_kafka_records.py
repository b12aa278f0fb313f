"""How the Kafka sink turns messages into records (no broker: `RecordEncoder.record`)."""

from __future__ import annotations

import orjson
import pytest

from streamflow.connectors.kafka import KafkaSinkConfig
from streamflow.connectors.kafka.records import KEYED, KEYLESS, RECORDS, RecordEncoder
from streamflow.core.errors import dead_letter_message
from streamflow.core.message import Message


def encoder(**keys) -> RecordEncoder:
    """The encoder of a sink with these keys, as `KafkaSink` builds it."""
    config = KafkaSinkConfig(**keys)
    return RecordEncoder(config, raw_out=config.dead_letter_format == "raw")


def test_values_keys_and_headers():
    enc = encoder(topic="out", key_field="user.id", headers={"app": "sf"})
    msg = Message({"user": {"id": 42}, "n": 1}, key="ignored", headers=[("trace", b"t1"), ("s", "text")])
    r = enc.record(msg)
    assert (r.topic, r.key, orjson.loads(r.value)) == ("out", b"42", {"user": {"id": 42}, "n": 1})
    assert r.headers == [("trace", b"t1"), ("s", b"text"), ("app", b"sf")]
    assert r.timestamp_ms is None


def test_message_key_bytes_values_and_tombstones():
    enc = encoder(topic="out", pass_headers=False, keep_timestamp=True)
    r = enc.record(Message(b"\x00raw", key="k", headers=[("h", b"1")], timestamp=12.5))
    assert (r.key, r.value, r.headers, r.timestamp_ms) == (b"k", b"\x00raw", [], 12500)
    tombstone = enc.record(Message(None, key=b"k"))
    assert tombstone.value is None and tombstone.key == b"k"
    with pytest.raises(ValueError, match="neither"):
        enc.record(Message(None))


def test_topic_from_a_field_or_a_function():
    by_field = encoder(topic_field="meta.topic")
    assert by_field.record(Message({"meta": {"topic": "t1"}})).topic == "t1"
    with pytest.raises(ValueError, match="topic must be a non-empty string"):
        by_field.record(Message({"meta": {}}))
    by_fn = encoder(topic_fn=lambda m: f"events-{m.value['kind']}", key_fn=lambda m: m.value["kind"])
    r = by_fn.record(Message({"kind": "click"}))
    assert (r.topic, r.key) == ("events-click", b"click")


def test_dead_letter_records_keep_the_original_bytes_and_error_headers():
    original = Message(None, key="k1", headers=[("h", b"v")], topic="in", partition=2, offset=7,
                       raw=b"{broken")
    record = dead_letter_message(original, ValueError("bad"), "parse", 1)
    raw = encoder(topic="dlq", dead_letter_format="raw").record(record)
    assert raw.value == b"{broken" and raw.key == b"k1"
    headers = dict(raw.headers)
    assert headers["h"] == b"v" and headers["streamflow.error"] == b"ValueError: bad"
    assert (headers["streamflow.stage"], headers["streamflow.source.topic"],
            headers["streamflow.source.partition"], headers["streamflow.source.offset"]) == (
        b"parse", b"in", b"2", b"7")
    as_record = encoder(topic="dlq", dead_letter_format="record").record(record)
    body = orjson.loads(as_record.value)
    assert body["payload"] == "{broken" and body["source"] == {"topic": "in", "partition": 2, "offset": 7}


def test_the_fast_path_makes_the_records_the_slow_path_makes():
    enc = encoder(topic="out")
    assert enc.plain
    msgs = [Message({"id": 1}), Message({"id": 2}, key="k"), Message([1], key=b"b"), Message({"id": 3}, key=7),
            Message(b"raw"), Message({"id": 4}, headers=[("h", b"1")]), Message(None, key="tomb")]
    assert enc.records(msgs) == [enc.record(m) for m in msgs]
    assert not encoder(topic="out", headers={"a": "b"}).plain
    assert not encoder(topic="out", key_field="id").plain
    assert not encoder(topic_field="t").plain


def test_records_each_keeps_the_good_ones_and_names_the_bad_ones():
    enc = encoder(topic_field="t")
    msgs = [Message({"t": "a"}), Message({"n": 1}), Message({"t": "b"})]
    with pytest.raises(ValueError, match="topic must be"):
        enc.records(msgs)
    records, failed = enc.records_each(msgs)
    assert [r.topic for r in records] == ["a", "b"]
    assert [(m, type(e)) for m, e in failed] == [(msgs[1], ValueError)]


def test_fast_path_shapes_are_structured_values_with_plain_keys_and_no_headers_to_pass():
    enc = encoder(topic="out")
    assert enc.shape([Message({"a": 1}), Message([1])]) == KEYLESS
    assert enc.shape([]) == RECORDS
    assert enc.shape([Message({"a": 1}), Message({"a": 2}, key="k"), Message({"a": 3}, key=b"b")]) == KEYED
    assert enc.shape([Message({"a": 1}, key=7)]) == RECORDS
    assert enc.shape([Message(b"bytes")]) == RECORDS
    assert enc.shape([Message({"a": 1}, headers=[("h", b"1")])]) == RECORDS
    assert encoder(topic="out", pass_headers=False).shape([Message({"a": 1}, headers=[("h", b"1")])]) == KEYLESS
    assert encoder(topic="out", key_field="a").shape([Message({"a": 1})]) == RECORDS  # not plain


def _fetched(offset: int, key: bytes | None, value: bytes | None) -> object:
    from aiokafka.structs import ConsumerRecord

    return ConsumerRecord("t", 0, offset, 1_700_000_000_000, 0, key, value, None, -1, -1, ())


def test_decoder_takes_a_batch_in_one_pass_and_keeps_positions_keys_and_sizes():
    from streamflow.connectors.kafka.decoding import RecordDecoder

    records = [_fetched(i, b"k%d" % i, b'{"id":%d}' % i) for i in range(3)]
    msgs, decoded, nbytes = RecordDecoder("json").messages("t", 0, records)
    assert decoded and nbytes == sum(len(r.value) for r in records)
    assert [(m.value, m.key, m.offset, m.raw) for m in msgs] == [
        ({"id": i}, f"k{i}", i, b'{"id":%d}' % i) for i in range(3)]
    assert msgs[0].timestamp == 1_700_000_000.0 and msgs[0].partition == 0


def test_decoder_handles_tombstones_non_utf8_keys_and_a_bad_payload():
    from streamflow.connectors.kafka.decoding import RecordDecoder

    decoder = RecordDecoder("json")
    msgs, decoded, nbytes = decoder.messages("t", 0, [_fetched(0, b"\xff", b'{"a":1}'), _fetched(1, b"k", None)])
    assert decoded and nbytes == 7
    assert [(m.key, m.value) for m in msgs] == [(b"\xff", {"a": 1}), ("k", None)]  # bytes where not UTF-8
    msgs, decoded, _ = decoder.messages("t", 0, [_fetched(0, None, b'{"a":1}'), _fetched(1, None, b"{bad")])
    assert not decoded and [m.value for m in msgs] == [None, None]  # none half-decoded
    good, failed = decoder.decode_each(msgs)
    assert [m.value for m in good] == [{"a": 1}] and [m.offset for m, _ in failed] == [1]
