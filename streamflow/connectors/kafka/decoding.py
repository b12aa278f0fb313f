"""Fetched Kafka records -> messages: values decoded with the source's codec, keys as str when UTF-8."""

from __future__ import annotations

from typing import Any, cast

from ...codecs import get_codec
from ...core.message import Message
from ._aiokafka import ConsumerRecord


def _keys(records: list[ConsumerRecord]) -> list[bytes | str | None]:
    """Every record's key, as `_key` makes it (one pass when all are UTF-8 or None)."""
    try:
        return [None if (k := r.key) is None else k.decode() for r in records]
    except UnicodeDecodeError:
        return [_key(r.key) for r in records]


def _key(key: bytes | None) -> bytes | str | None:
    """Keys become str when they are UTF-8 (the usual case), else stay bytes."""
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return key


class RecordDecoder:
    """Turns one partition's fetched records into messages with their position and original bytes."""

    def __init__(self, codec: str) -> None:
        # raw values need no decoding: the bytes are the value
        self._codec = None if codec == "raw" else get_codec(codec)

    def messages(self, topic: str, partition: int,
                 records: list[ConsumerRecord]) -> tuple[list[Message], bool, int]:
        """The records as messages, values decoded in one pass (`Codec.decode_many`), whether that
        worked (if not, the messages have no value yet and `decode_each` tells which ones fail), and
        the bytes of their values (a batch's `Batch.nbytes`)."""
        raws = [r.value for r in records]
        try:
            nbytes = sum(map(len, cast(list[bytes], raws)))  # one C loop; a tombstone raises
        except TypeError:  # a tombstone
            nbytes = sum([len(v) for v in raws if v is not None])
        values = self._values(raws)
        decoded = values is not None
        if values is None:
            values = [None] * len(raws)
        msg = Message
        return [msg(d, k, list(h) if (h := r.headers) else None, r.timestamp / 1000, topic, partition, r.offset, v)
                for r, k, d, v in zip(records, _keys(records), values, raws, strict=True)], decoded, nbytes

    def _values(self, raws: list[bytes | None]) -> list[Any] | None:
        """The decoded values (tombstones stay None), or None when a payload fails to decode."""
        codec = self._codec
        if codec is None:
            return raws
        if codec.batch_safe:
            try:
                return codec.decode_many(cast(list[bytes], raws))
            except Exception:  # noqa: BLE001 - a bad payload or a tombstone: one by one below
                pass
        decode = codec.decode
        try:
            return [None if v is None else decode(v) for v in raws]
        except Exception:  # noqa: BLE001 - a codec may raise anything
            return None

    def decode_each(self, msgs: list[Message]) -> tuple[list[Message], list[tuple[Message, Exception]]]:
        """Decode each message's ``raw`` bytes into its value: those that decode, and the others with
        their error (their value stays None)."""
        assert self._codec is not None  # raw values never fail
        decode = self._codec.decode
        keep: list[Message] = []
        failed: list[tuple[Message, Exception]] = []
        for m in msgs:
            try:
                m.value = None if m.raw is None else decode(m.raw)
            except Exception as exc:  # noqa: BLE001 - a codec may raise anything
                failed.append((m, exc))
                continue
            keep.append(m)
        return keep, failed
