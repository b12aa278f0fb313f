"""What the joins share: the join key of an event, its time, where the join's state lives.

Both `join` (stream–table) and `interval_join` (stream–stream) look an event
up by a key — the Kafka key by default, or a field or function of the value —
at a time — the Kafka record time by default, or ``event_time`` — and keep
their state in the state stores (`streamflow.state`), in memory or on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from ..core.message import Message
from ..core.refs import FunctionRef
from ..core.stage import EventTransformConfig, Source
from ..state.copartition import KeyPartitions, NotCoPartitioned
from ..state.event_time import EventTime
from .base import is_async_callable
from .fields import path_getter

if TYPE_CHECKING:  # the Kafka connector imports the transforms, which import this
    from ..connectors.kafka.security import KafkaConnection


class JoinKeyConfig(EventTransformConfig):
    """The keys of every join: the join key, event time, the key check, the state backend."""

    key: str | None = Field(None, description="event field (dotted path) holding the join key (default: the "
                                              "event's Kafka key)")
    key_fn: FunctionRef | None = Field(None, description="`module:function` giving the join key from the "
                                                         "event's value (instead of `key`)")
    event_time: EventTime | None = Field(None, description=(
        "the event's time: `{field: …}`, `{fn: …}`, `{timestamp: true}` (default: the Kafka record time)"))
    check_keys: bool = Field(True, description="check that each event's join key belongs in its partition "
                                               "(Kafka's default partitioner); a wrong one goes to `on_error`")
    state_backend: Literal["memory", "disk"] = Field(
        "memory", description="where the join's state lives: `memory`, or `disk` (RocksDB) for state larger "
                              "than memory; either is restored from Kafka on start")
    state_dir: Path | None = Field(None, description="directory of the `disk` state (default: a temporary one)")

    @model_validator(mode="after")
    def _check_key(self) -> JoinKeyConfig:
        if self.key is not None and self.key_fn is not None:
            raise ValueError("a join takes `key` or `key_fn`, not both")
        if self.key is not None:
            path_getter(self.key)  # rejects malformed paths
        if self.key_fn is not None and is_async_callable(self.key_fn):
            raise ValueError("a join's `key_fn` must be a plain (sync) function")
        return self

    def key_getter(self) -> Callable[[Message], Any]:
        """Where an event's join key comes from: a field, a function of the value, or the Kafka key."""
        if self.key is not None:
            get = path_getter(self.key)
            return lambda m: get(m.value)
        if self.key_fn is not None:
            fn = self.key_fn
            return lambda m: fn(m.value)
        return lambda m: m.key

    def time_getter(self) -> Callable[[Message], float]:
        """An event's time in epoch seconds: ``event_time``, or the Kafka record time."""
        return self.event_time.extractor() if self.event_time is not None else _record_time


def join_key(key: Any) -> bytes:
    """The store key of a join key: bytes as they are, text UTF-8, numbers as their decimal text."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return str(key).encode()
    raise ValueError(f"join key must be text, bytes or a number, got {type(key).__name__} {key!r}"
                     if key is not None else "event has no join key")


def check_key(key: bytes, msg: Message, home_of: KeyPartitions, other: str) -> None:
    """Raise `NotCoPartitioned` unless ``key`` belongs in ``msg``'s partition (joined with topic ``other``)."""
    home = home_of(key)
    if home != msg.partition:
        raise NotCoPartitioned(
            f"join key {key!r} belongs in partition {home} (Kafka's default partitioner), but the event came "
            f"from {msg.topic}[{msg.partition}]: key it by the join key, as {other!r} is (or set "
            f"check_keys: false for a partitioner of your own)")


def source_connection(source: object, stage: str) -> tuple[KafkaConnection, str]:
    """The Kafka connection of the source feeding join ``stage``, and the pipeline's name."""
    from ..connectors.kafka.security import KafkaConnection

    connection = getattr(source, "config", None)
    if not isinstance(source, Source) or not isinstance(connection, KafkaConnection):
        raise TypeError(f"join {stage!r}: source {source!r} is not a Kafka source")
    return connection, source.ctx.pipeline if source.ctx is not None else "pipeline"


def _record_time(msg: Message) -> float:
    if msg.timestamp is None:
        raise ValueError("event has no timestamp (set `event_time`)")
    return msg.timestamp
