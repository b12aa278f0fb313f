"""`Message`: one event and where it came from."""

from __future__ import annotations

from typing import Any


class Message:
    """One event flowing through a pipeline.

    ``value`` is the decoded payload (or raw bytes before a ``parse`` stage).
    ``topic``/``partition``/``offset`` say where it came from: a Kafka
    position, or for files the path, ``0`` and the 1-based line number.
    ``raw`` keeps the original bytes so a dead-letter record can carry them.
    """

    __slots__ = ("value", "key", "headers", "timestamp", "topic", "partition", "offset", "raw")

    def __init__(
        self,
        value: Any,
        key: bytes | str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp: float | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        raw: bytes | None = None,
    ) -> None:
        self.value = value
        self.key = key
        self.headers = headers
        self.timestamp = timestamp
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.raw = raw

    def position(self) -> str:
        """Human-readable source position, used in logs and dead-letter records."""
        if self.topic is None:
            return f"offset {self.offset}" if self.offset is not None else "unknown position"
        if self.partition is None:
            return f"{self.topic}@{self.offset}"
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        if not self.headers:
            return None
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None

    def copy(self, **changes: Any) -> Message:
        """A shallow copy with some fields replaced."""
        m = Message(
            self.value, self.key, self.headers, self.timestamp,
            self.topic, self.partition, self.offset, self.raw,
        )
        for k, v in changes.items():
            setattr(m, k, v)
        return m

    def __repr__(self) -> str:
        return f"Message({self.value!r}, key={self.key!r}, at={self.position()})"
