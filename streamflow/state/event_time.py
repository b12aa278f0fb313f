"""Where an event's time comes from: a field, a function or the Kafka timestamp (contract 9).

In YAML, one of::

    event_time: {field: created_at}              # epoch seconds (unit: s, the default)
    event_time: {field: meta.ts, unit: ms}       # epoch milliseconds, dotted path
    event_time: {fn: "my_module:event_time"}     # called with the event's value
    event_time: {timestamp: true}                # Message.timestamp (Kafka record time)

A field or function may give a number (epoch seconds, or milliseconds with
``unit: ms``), an ISO-8601 string with a UTC offset (``2024-05-01T12:00:00Z``)
or a timezone-aware `datetime`. A naive time (no offset) is an error: the zone
it meant is not guessed. A missing time is an error too — the stage's error
policy sees it, nothing is dropped silently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.message import Message
from ..core.refs import FunctionRef

__all__ = ["EventTime", "to_seconds"]

_SCALE = {"s": 1.0, "ms": 1000.0}


class EventTime(BaseModel):
    """The source of event time: exactly one of ``field``, ``fn`` or ``timestamp``."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = Field(None, description="event field (dotted path) holding the event time")
    fn: FunctionRef | None = Field(None, description="`module:function` returning an event's time, "
                                                     "called with its value")
    timestamp: bool = Field(False, description="use the message timestamp (the Kafka record time)")
    unit: Literal["s", "ms"] = Field("s", description="unit of numeric times from `field` or `fn`: "
                                                      "epoch seconds or milliseconds")

    @model_validator(mode="after")
    def _one_source(self) -> EventTime:
        sources = [name for name, on in (("field", self.field is not None), ("fn", self.fn is not None),
                                         ("timestamp", self.timestamp)) if on]
        if len(sources) != 1:
            raise ValueError("event_time needs exactly one of `field`, `fn` or `timestamp: true`"
                             + (f", got {' and '.join(sources)}" if sources else ""))
        if self.field is not None:
            _path_getter(self.field)  # rejects malformed paths
        if self.timestamp and self.unit != "s":
            raise ValueError("`unit` applies to `field` and `fn`; message timestamps are in seconds")
        return self

    def extractor(self) -> Callable[[Message], float]:
        """A function giving a message's event time in epoch seconds, raising ValueError if it has none."""
        if self.timestamp:
            return _message_timestamp
        scale = _SCALE[self.unit]
        if self.fn is not None:
            fn, what = self.fn, f"function {self.fn.__module__}:{self.fn.__qualname__}"
        else:
            assert self.field is not None
            fn, what = _path_getter(self.field), f"field {self.field!r}"

        def extract(msg: Message) -> float:
            raw = fn(msg.value)
            if raw is None:
                raise ValueError(f"event has no time: {what} gave None")
            return to_seconds(raw, scale, what)

        return extract


def _path_getter(path: str) -> Callable[[Any], Any]:
    """`transforms.fields.path_getter`, imported on use: the transforms package imports this module
    (the `window` transform), so importing it at the top would make a cycle."""
    from ..transforms.fields import path_getter

    return path_getter(path)


def _message_timestamp(msg: Message) -> float:
    if msg.timestamp is None:
        raise ValueError("message has no timestamp (event_time: {timestamp: true})")
    return msg.timestamp


def to_seconds(raw: Any, scale: float = 1.0, what: str = "event time") -> float:
    """Epoch seconds of ``raw``: a number divided by ``scale``, an ISO-8601 string or an aware datetime."""
    cls = raw.__class__
    if cls is int or cls is float:
        return raw / scale if scale != 1.0 else raw  # type: ignore[no-any-return]
    if isinstance(raw, str):
        try:
            raw = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{what}: {raw!r} is neither a number nor an ISO-8601 time") from None
    if isinstance(raw, dt.datetime):
        if raw.tzinfo is None or raw.utcoffset() is None:
            raise ValueError(f"{what}: {raw.isoformat()!r} has no UTC offset; "
                             "write it as 2024-05-01T12:00:00Z or +02:00")
        return raw.timestamp()
    raise ValueError(f"{what}: expected epoch seconds, an ISO-8601 string or a datetime, "
                     f"got {type(raw).__name__} {raw!r}")
