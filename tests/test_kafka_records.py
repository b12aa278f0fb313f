"""How the Kafka sink turns messages into records (no broker: `KafkaSink._record`)."""

from __future__ import annotations

import orjson
import pytest

from streamflow.connectors.kafka import KafkaSink
from streamflow.core.errors import dead_letter_message
from streamflow.core.message import Message


def test_values_keys_and_headers():
    sink = KafkaSink(topic="out", key_field="user.id", headers={"app": "sf"})
    msg = Message({"user": {"id": 42}, "n": 1}, key="ignored", headers=[("trace", b"t1"), ("s", "text")])
    r = sink._record(msg)
    assert (r.topic, r.key, orjson.loads(r.value)) == ("out", b"42", {"user": {"id": 42}, "n": 1})
    assert r.headers == [("trace", b"t1"), ("s", b"text"), ("app", b"sf")]
    assert r.timestamp_ms is None


def test_message_key_bytes_values_and_tombstones():
    sink = KafkaSink(topic="out", pass_headers=False, keep_timestamp=True)
    r = sink._record(Message(b"\x00raw", key="k", headers=[("h", b"1")], timestamp=12.5))
    assert (r.key, r.value, r.headers, r.timestamp_ms) == (b"k", b"\x00raw", [], 12500)
    tombstone = sink._record(Message(None, key=b"k"))
    assert tombstone.value is None and tombstone.key == b"k"
    with pytest.raises(ValueError, match="neither"):
        sink._record(Message(None))


def test_topic_from_a_field_or_a_function():
    by_field = KafkaSink(topic_field="meta.topic")
    assert by_field._record(Message({"meta": {"topic": "t1"}})).topic == "t1"
    with pytest.raises(ValueError, match="topic must be a non-empty string"):
        by_field._record(Message({"meta": {}}))
    by_fn = KafkaSink(topic_fn=lambda m: f"events-{m.value['kind']}", key_fn=lambda m: m.value["kind"])
    r = by_fn._record(Message({"kind": "click"}))
    assert (r.topic, r.key) == ("events-click", b"click")


def test_dead_letter_records_keep_the_original_bytes_and_error_headers():
    original = Message(None, key="k1", headers=[("h", b"v")], topic="in", partition=2, offset=7,
                       raw=b"{broken")
    record = dead_letter_message(original, ValueError("bad"), "parse", 1)
    raw = KafkaSink(topic="dlq", dead_letter_format="raw")._record(record)
    assert raw.value == b"{broken" and raw.key == b"k1"
    headers = dict(raw.headers)
    assert headers["h"] == b"v" and headers["streamflow.error"] == b"ValueError: bad"
    assert (headers["streamflow.stage"], headers["streamflow.source.topic"],
            headers["streamflow.source.partition"], headers["streamflow.source.offset"]) == (
        b"parse", b"in", b"2", b"7")
    as_record = KafkaSink(topic="dlq", dead_letter_format="record")._record(record)
    body = orjson.loads(as_record.value)
    assert body["payload"] == "{broken" and body["source"] == {"topic": "in", "partition": 2, "offset": 7}
