"""Messages -> Kafka records: the topic, key, value bytes, headers and timestamp of each message.

`RecordEncoder` holds what the sink's config says about that (codec, topic
and key choice, headers, timestamps, raw dead-letter output). Structured
values with plain keys take a fast path; anything else goes through `record`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

from ...codecs import get_codec
from ...core.message import Message
from ...transforms.fields import path_getter
from .sink_config import KafkaSinkConfig

#: `RecordEncoder.shape` of a write: records made one by one, keyless values, keyed values.
RECORDS, KEYLESS, KEYED = 0, 1, 2


class Record(NamedTuple):
    """One message ready to send.

    A tuple: built in one C call on the hot path (`_new_record`) and unpacked in the send loop.
    """

    msg: Message
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int | None


#: ``Record`` built from one tuple in one C call (its generated ``__new__`` takes one Python call more).
_new_record = cast(Callable[[type[Record], tuple[Any, ...]], Record], tuple.__new__)


def _field(path: str) -> Callable[[Message], Any]:
    """Getter of a dotted field path in a message's (mapping) value: None where it is missing."""
    get = path_getter(path)
    return lambda msg: get(msg.value)


def _to_bytes(value: Any) -> bytes | None:
    """A key or header value as bytes: str UTF-8 encoded, anything else by its str()."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


class RecordEncoder:
    """Turns a sink's messages into records, as its config says.

    ``raw_out``: write dead letters as their original bytes and headers (the
    sink is the pipeline's dead-letter sink, or ``dead_letter_format: raw``).
    """

    def __init__(self, config: KafkaSinkConfig, raw_out: bool) -> None:
        codec = get_codec(config.codec)
        self.encode = codec.encode
        #: encoder for values copied into a record batch at once (no exact-size copy needed)
        self.encode_now: Callable[[Any], bytes] = getattr(codec, "encode_transient", codec.encode)
        self.topic = config.topic
        self.raw_out = raw_out
        self._pass_headers = config.pass_headers
        self._keep_timestamp = config.keep_timestamp
        self._static_headers = [(k, v.encode()) for k, v in config.headers.items()]
        self._topic_of: Callable[[Message], Any]
        if config.topic is not None:
            fixed = config.topic
            self._topic_of = lambda m: fixed
        elif config.topic_fn is not None:
            self._topic_of = config.topic_fn
        else:
            assert config.topic_field is not None  # the config gives exactly one of the three
            self._topic_of = _field(config.topic_field)
        self._key_of: Callable[[Message], Any] = (
            config.key_fn or (_field(config.key_field) if config.key_field is not None else _own_key))
        #: Whether records can take the fast path: fixed topic, the message's own key, no static
        #: headers, send time as timestamp, not raw dead-letter output.
        self.plain = (config.topic is not None and config.key_fn is None and config.key_field is None
                      and not self._static_headers and not config.keep_timestamp and not raw_out)

    def shape(self, msgs: list[Message]) -> int:
        """Which fast path a write of ``msgs`` can take, if this sink is `plain`: `KEYLESS` when every
        message is a structured value without key (nor headers to pass), `KEYED` when some have a str
        or bytes key; then each value is encoded straight into a record batch, with no `Record`.
        `RECORDS` (0) when a message needs `records`."""
        if not msgs or not self.plain:
            return RECORDS
        pass_headers = self._pass_headers
        keyed = False
        for m in msgs:
            tv = type(m.value)
            if (tv is not dict and tv is not list) or (pass_headers and m.headers):
                return RECORDS
            k = m.key
            if k is not None:
                if type(k) is not str and type(k) is not bytes:
                    return RECORDS
                keyed = True
        return KEYED if keyed else KEYLESS

    def records(self, msgs: Sequence[Message]) -> list[Record]:
        """The records of ``msgs``; raises on the first message that has none (see `records_each`).

        Structured values with bytes/str/no keys and no headers to pass take a fast path.
        """
        if not self.plain:
            return [self.record(m) for m in msgs]
        topic, encode, record, new = self.topic, self.encode, self.record, _new_record
        pass_headers = self._pass_headers
        out: list[Record] = []
        append = out.append
        for m in msgs:
            v, k = m.value, m.key
            tv = type(v)
            if (tv is dict or tv is list) and not (pass_headers and m.headers):
                if k is None or type(k) is bytes:
                    append(new(Record, (m, topic, k, encode(v), [], None)))
                    continue
                if type(k) is str:
                    append(new(Record, (m, topic, k.encode(), encode(v), [], None)))
                    continue
            append(record(m))
        return out

    def records_each(self, msgs: Sequence[Message]) -> tuple[list[Record], list[tuple[Message, Exception]]]:
        """The records of the messages that have one, and the others with their error."""
        records: list[Record] = []
        failed: list[tuple[Message, Exception]] = []
        for m in msgs:
            try:
                records.append(self.record(m))
            except Exception as exc:  # noqa: BLE001 - user key/topic functions may raise anything
                failed.append((m, exc))
        return records, failed

    def record(self, m: Message) -> Record:
        """The record of one message; ValueError when it has neither value nor key, or no topic."""
        if self.raw_out and m.raw is not None:
            raw: bytes | str = m.raw
            value: bytes | None = raw.encode() if isinstance(raw, str) else raw
            headers = list(m.headers or ())
        else:
            v = m.value
            if v is None:
                value = None
            elif isinstance(v, (bytes, bytearray, memoryview)):
                value = bytes(v)
            else:
                value = self.encode(v)
            headers = list(m.headers or ()) if (self._pass_headers or self.raw_out) else []
        if headers:
            headers = [(str(k), _to_bytes(hv) or b"") for k, hv in headers]
        headers += self._static_headers
        key = _to_bytes(self._key_of(m))
        if value is None and key is None:
            raise ValueError("a Kafka message needs a value or a key; this one has neither")
        topic = self._topic_of(m)
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        ts = int(m.timestamp * 1000) if self._keep_timestamp and m.timestamp is not None else None
        return Record(m, topic, key, value, headers, ts)


def _own_key(m: Message) -> bytes | str | None:
    """The message's own key."""
    return m.key
