"""The config of the `window` transform: window kind, event time, key, aggregations, late events.

Which keys go together is checked here, before anything runs: ``step`` only
with ``kind: hopping``, ``gap`` only (and always) with ``kind: session``,
``allowed_lateness`` and ``idle_timeout`` only with event time, and session and
sliding windows only with aggregations that can merge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..core.refs import FunctionRef
from ..core.stage import EventTransformConfig
from ..state.event_time import EventTime
from ..state.windows import Assigner, Hopping, Session, Sliding, Tumbling
from .aggregations import AGGREGATIONS, mergeable, parse_aggregate
from .base import is_async_callable
from .fields import path_getter

__all__ = ["RESERVED", "LateSink", "WindowConfig"]

#: Fields every window result has; aggregates may not use these names.
RESERVED = ("window_start", "window_end", "key")

WindowKind = Literal["tumbling", "hopping", "sliding", "session"]


class LateSink(BaseModel):
    """``late: {sink: name}``: late events go to the sink of that name, and only they do."""

    model_config = ConfigDict(extra="forbid")

    sink: str = Field(description="name of a sink of the pipeline")


class WindowConfig(EventTransformConfig):
    kind: WindowKind = Field("tumbling", description=(
        "tumbling: adjacent windows of `size`; hopping: windows of `size` starting every `step`; "
        "sliding: one window of the `size` seconds up to each event (start excluded, end included); "
        "session: events less than `gap` apart"))
    size: float | None = Field(None, gt=0, description="window length in seconds (tumbling and hopping "
                                                       "windows are aligned to multiples of it, or of "
                                                       "`step`, since the epoch); not for sessions")
    step: float | None = Field(None, gt=0, description="hopping: seconds between window starts "
                                                       "(at most `size`)")
    gap: float | None = Field(None, gt=0, description="session: seconds of quiet that end a session")
    event_time: EventTime | None = Field(None, description=(
        "where event time comes from: `{field: path, unit: s|ms}`, `{fn: module:function}` or "
        "`{timestamp: true}`; null (and no `time_field`): processing time"))
    time_field: str | None = Field(None, description="shorthand for `event_time: {field: …}` (epoch seconds)")
    allowed_lateness: float = Field(0.0, ge=0, description="event time: the watermark of a partition is "
                                                           "its latest event time minus this")
    idle_timeout: float | None = Field(None, gt=0, description=(
        "event time: seconds without events after which a partition stops holding the watermark back "
        "(null: a quiet partition holds windows open until it speaks or the stream ends)"))
    late: Literal["drop", "error", "dead_letter"] | LateSink = Field("drop", description=(
        "where an event behind the watermark (all its windows closed) goes: `drop` (counted as filtered), "
        "`error` (the stage's `on_error`), `dead_letter` (the dead-letter sink, error `LateEvent`) or "
        "`{sink: name}` (the named sink, which then gets only these events, unchanged); always counted "
        "in `streamflow_late_events_total`"))
    key: str | None = Field(None, description="event field (dotted path) to group by; one window per key value")
    key_fn: FunctionRef | None = Field(None, description="`module:function` giving an event's key from its "
                                                         "value (instead of `key`); must return a hashable value")
    aggregate: dict[str, Any] = Field(default_factory=dict, description=(
        "output field -> aggregation: `count: null`, `n: count`, `total: {sum: amount}`; "
        f"aggregations: {', '.join(sorted(AGGREGATIONS))}"))
    fn: FunctionRef | None = Field(None, description="`module:function` called with the list of a "
                                                     "window's values; a mapping result is merged into "
                                                     "the output, anything else is stored as `result`")

    state_backend: Literal["memory", "disk"] = Field(
        "memory", description="with a Kafka input, where the open windows live (`disk`: RocksDB); either is "
                              "restored from the `<pipeline>-<stage>-changelog` topic on start")
    state_dir: Path | None = Field(None, description="directory of the `disk` state (default: a temporary one)")

    @field_validator("aggregate")
    @classmethod
    def _aggregates(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, spec in v.items():
            if name in RESERVED:
                raise ValueError(f"aggregate name {name!r} is reserved ({', '.join(RESERVED)})")
            parse_aggregate(name, spec)
        return v

    @model_validator(mode="after")
    def _check(self) -> WindowConfig:
        if not self.aggregate and self.fn is None:
            raise ValueError("window needs `aggregate`, `fn` or both")
        self._check_shape()
        self._check_time()
        if self.key is not None and self.key_fn is not None:
            raise ValueError("window takes `key` or `key_fn`, not both")
        if self.key is not None:
            path_getter(self.key)  # rejects malformed paths
        if self.key_fn is not None and is_async_callable(self.key_fn):
            raise ValueError("window `key_fn` must be a plain (sync) function")
        if self.kind in ("session", "sliding"):
            for name, spec in self.aggregate.items():
                op, _ = parse_aggregate(name, spec)
                if not mergeable(AGGREGATIONS[op]):
                    raise ValueError(f"aggregate {name!r}: {op} cannot merge windows, which "
                                     f"`kind: {self.kind}` needs")
        return self

    def _check_shape(self) -> None:
        """``size``, ``step`` and ``gap`` as the window kind wants them."""
        kind = self.kind
        if kind == "session":
            if self.gap is None:
                raise ValueError("`kind: session` needs `gap` (seconds of quiet that end a session)")
            if self.size is not None:
                raise ValueError("`size` does not apply to `kind: session` (a session lasts until a `gap`)")
        else:
            if self.gap is not None:
                raise ValueError(f"`gap` applies to `kind: session`, not `kind: {kind}`")
            if self.size is None:
                raise ValueError(f"`kind: {kind}` needs `size` (window length in seconds)")
        if kind == "hopping":
            if self.step is None:
                raise ValueError("`kind: hopping` needs `step` (seconds between window starts)")
            if self.size is not None and self.step > self.size:
                raise ValueError(f"`step` ({self.step}) must not exceed `size` ({self.size})")
        elif self.step is not None:
            raise ValueError(f"`step` applies to `kind: hopping`, not `kind: {kind}`")

    def _check_time(self) -> None:
        """Event time from one place; lateness and idleness only with event time."""
        if self.time_field is not None:
            if self.event_time is not None:
                raise ValueError("window takes `event_time` or its shorthand `time_field`, not both")
            path_getter(self.time_field)  # rejects malformed paths
        if self.time_source() is None:
            for name in ("allowed_lateness", "idle_timeout"):
                if getattr(self, name):
                    raise ValueError(f"`{name}` applies to event time (`event_time` or `time_field`)")

    def time_source(self) -> EventTime | None:
        """Where event time comes from (``time_field`` expanded); None: processing time."""
        if self.time_field is not None:
            return EventTime(field=self.time_field)
        return self.event_time

    def assigner(self) -> Assigner:
        """The window kind with its parameters (integral seconds kept as ints, for tidy output)."""
        if self.kind == "session":
            assert self.gap is not None
            return Session(_tidy(self.gap))
        assert self.size is not None
        size = _tidy(self.size)
        if self.kind == "hopping":
            assert self.step is not None
            return Hopping(size, _tidy(self.step))
        return Sliding(size) if self.kind == "sliding" else Tumbling(size)


def _tidy(seconds: float) -> float:
    return int(seconds) if float(seconds).is_integer() else seconds
