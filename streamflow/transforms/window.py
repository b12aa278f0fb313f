"""window: tumbling-window aggregation, by processing time or event time, optionally per key.

Each event falls in the window ``[start, start + size)`` of its time (event
time from ``time_field``, in epoch seconds, or the wall clock when it arrives),
per value of the ``key`` field. When a window closes, one event is emitted:
``{window_start, window_end, key?, <aggregates>…}``.

Acks: every input batch that contributed to an open window is held by it
(one reference per window), so a source position is committed only after the
results of all windows covering it are written (contract 2).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..core.acks import Ack
from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.refs import FunctionRef
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig, StageContext, Transform
from .aggregations import AGGREGATIONS, Aggregation, aggregation, number, parse_aggregate
from .fields import path_getter

__all__ = ["AGGREGATIONS", "Aggregation", "Window", "WindowConfig", "aggregation", "parse_aggregate"]


# -- config ---------------------------------------------------------------------------
#: Fields every window result has; aggregates may not use these names.
RESERVED = ("window_start", "window_end", "key")


class WindowConfig(EventTransformConfig):
    size: float = Field(gt=0, description="window length in seconds (windows are aligned to multiples "
                                          "of it since the epoch)")
    time_field: str | None = Field(None, description="event field (dotted path) holding the event time "
                                                     "in epoch seconds; null: processing time")
    allowed_lateness: float = Field(0.0, ge=0, description="event time: seconds a window stays open "
                                                           "after a later event's time passes its end")
    late: Literal["drop", "error"] = Field("drop", description="an event whose window is already "
                                                               "closed: drop it (counted as filtered) "
                                                               "or send it to `on_error`")
    key: str | None = Field(None, description="event field (dotted path) to group by; one window "
                                              "per key value")
    aggregate: dict[str, Any] = Field(default_factory=dict, description=(
        "output field -> aggregation: `count: null`, `n: count`, `total: {sum: amount}`; "
        f"aggregations: {', '.join(sorted(AGGREGATIONS))}"))
    fn: FunctionRef | None = Field(None, description="`module:function` called with the list of a "
                                                     "window's values; a mapping result is merged into "
                                                     "the output, anything else is stored as `result`")

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
        for path in (self.time_field, self.key):
            if path is not None:
                path_getter(path)  # rejects malformed paths
        if self.allowed_lateness and self.time_field is None:
            raise ValueError("`allowed_lateness` applies to event time (`time_field`)")
        return self


def _present(value: Any) -> bool:
    """The "field" of an aggregation without one (`count` of events): always there."""
    return True


class LateEvent(Exception):
    """An event arrived after its window closed (``late: error``)."""


# -- the transform --------------------------------------------------------------------
class _Window:
    """One open (window, key): aggregate states, values for ``fn``, and the acks it holds."""

    __slots__ = ("start", "key", "states", "values", "acks", "created", "seq")

    def __init__(self, start: float, key: Any, states: list[Any], created: float) -> None:
        self.start = start
        self.key = key
        self.states = states
        self.values: list[Any] = []
        self.acks: list[Ack] = []
        self.created = created
        self.seq = -1  # last input batch that contributed


@TRANSFORMS.register("window")
class Window(Transform[WindowConfig]):
    """Tumbling windows of ``size`` seconds, by processing time or event time (``time_field``), per ``key``.

    When a window closes it emits one event ``{window_start, window_end, key?, <aggregates>…}``
    (built-in aggregations or a user function). With event time a watermark
    closes windows; an event behind it goes to ``late``. The inputs' positions
    are committed only once every window holding them has been written.
    """

    def setup(self) -> None:
        cfg = self.config
        self.size: float = int(cfg.size) if cfg.size.is_integer() else cfg.size
        self.event_time = cfg.time_field is not None
        self._time = path_getter(cfg.time_field) if cfg.time_field is not None else None
        self._key = path_getter(cfg.key) if cfg.key is not None else None
        self._aggs: list[tuple[str, Callable[[Any], Any] | None, Aggregation]] = []
        for name, spec in cfg.aggregate.items():
            op, field = parse_aggregate(name, spec)
            self._aggs.append((name, path_getter(field) if field else None, AGGREGATIONS[op]()))
        self._initial = [agg.initial for _, _, agg in self._aggs]
        self._steps = [(get or _present, agg.step) for _, get, agg in self._aggs]
        #: Timed or in-place aggregations need `_fold`; the others take the one-line fast path.
        self._gets = [get for get, _ in self._steps]
        self._agg_objects = [agg for _, _, agg in self._aggs]
        self._simple = not any(agg.timed or agg.in_place for _, _, agg in self._aggs)
        self.fn = cfg.fn
        self.errors = ErrorHandler(self.name, cfg.on_error)
        #: Wall clock (epoch seconds) for processing time, replaceable in tests.
        self.clock = time.time
        self.tick_interval = None if self.event_time else min(self.size / 4, 1.0)
        self._open: dict[float, dict[Any, _Window]] = {}  # start -> key -> window
        self._max_time: float | None = None  # event time: the latest seen
        self._seq = 0

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)

    @property
    def watermark(self) -> float | None:
        """Event time below which windows are complete (processing time: the clock)."""
        if not self.event_time:
            return self.clock()
        if self._max_time is None:
            return None
        return self._max_time - self.config.allowed_lateness

    # -- intake -----------------------------------------------------------------------
    async def process(self, batch: Batch) -> Batch | None:
        self._seq += 1
        seq = self._seq
        touched: list[_Window] = []
        now = None if self.event_time else self.clock()
        for m in batch.messages:
            try:
                w = self._add(m, now, batch.created)
            except Exception as exc:  # noqa: BLE001 - the error policy decides
                await self.errors.handle(m, exc, None, batch)
                continue
            if w is not None and w.seq != seq:
                w.seq = seq
                touched.append(w)
        if touched:  # each window holds one reference on the batch's acks
            batch.retain(len(touched) - 1)
            for w in touched:
                w.acks.extend(batch.acks)
        else:
            batch.ack()
        watermark = self.watermark
        return await self._emit(self._due(watermark)) if watermark is not None else None

    def _add(self, msg: Message, now: float | None, created: float) -> _Window | None:
        """Fold ``msg`` into its window; None when it is late and dropped."""
        value = msg.value
        if self._time is not None:
            ts = self._time(value)
            if ts is None:
                raise ValueError(f"event has no time field {self.config.time_field!r}")
            ts = number(ts)
        else:
            assert now is not None
            ts = now
        size = self.size
        start = ts // size * size
        if now is None and self._max_time is not None \
                and start + size <= self._max_time - self.config.allowed_lateness:
            if self.config.late == "error":
                raise LateEvent(f"event time {ts} is in window [{start}, {start + size}) "
                                f"which closed at watermark {self.watermark}")
            if self.ctx is not None:
                self.ctx.stats.filtered += 1
            return None
        key = self._key(value) if self._key is not None else None
        by_key = self._open.get(start)
        w = by_key.get(key) if by_key is not None else None
        states = w.states if w is not None else self._initial
        if self._simple:
            new = [s if (x := get(value)) is None else step(s, x)
                   for s, (get, step) in zip(states, self._steps, strict=True)]
        else:
            new = self._fold(states, value, ts)
        if w is None:
            hash(key)  # an unhashable key fails here, before a window exists
            w = self._open.setdefault(start, {})[key] = _Window(start, key, new, created)
        else:
            w.states = new
        if self.fn is not None:
            w.values.append(value)
        if now is None and (self._max_time is None or ts > self._max_time):
            self._max_time = ts
        return w

    def _fold(self, states: list[Any], value: Any, ts: float) -> list[Any]:
        """The states after folding in ``value``; an exception leaves ``states`` as they were.

        In-place aggregations are checked first and stepped last, once nothing else can fail.
        """
        new = list(states)
        in_place: list[tuple[int, Aggregation, Any]] = []
        for i, (get, agg) in enumerate(zip(self._gets, self._agg_objects, strict=True)):
            x = get(value)
            if x is None:
                continue
            if agg.timed:
                x = (ts, x)
            if agg.in_place:
                agg.check(x)
                in_place.append((i, agg, x))
            else:
                new[i] = agg.step(states[i], x)
        for i, agg, x in in_place:
            new[i] = agg.step(new[i], x)
        return new

    # -- output -----------------------------------------------------------------------
    async def tick(self) -> Batch | None:
        return None if self.event_time else await self._emit(self._due(self.clock()))

    async def flush(self) -> list[Batch]:
        out = await self._emit(self._due(None))
        return [out] if out is not None else []

    def _due(self, watermark: float | None) -> list[_Window]:
        """Remove and return the windows ending at or before ``watermark`` (None: all), oldest first."""
        size = self.size
        starts = sorted(s for s in self._open if watermark is None or s + size <= watermark)
        return [w for s in starts for w in self._open.pop(s).values()]

    async def _emit(self, windows: list[_Window]) -> Batch | None:
        if not windows:
            return None
        out: list[Message] = []
        acks: list[Ack] = []
        for w in windows:
            acks.extend(w.acks)
            msg = await self._result(w)
            if msg is not None:
                out.append(msg)
        return Batch(out, acks, min(w.created for w in windows))

    async def _result(self, w: _Window) -> Message | None:
        value: dict[str, Any] = {"window_start": w.start, "window_end": w.start + self.size}
        if self._key is not None:
            value["key"] = w.key
        for (name, _, agg), state in zip(self._aggs, w.states, strict=True):
            value[name] = agg.result(state)
        key = w.key if w.key is None or isinstance(w.key, (str, bytes)) else str(w.key)
        msg = Message(value, key=key)
        if self.fn is None:
            return msg
        try:
            extra = await self._call_fn(w.values)
        except Exception as exc:  # noqa: BLE001 - the error policy decides
            handled = await self.errors.handle(msg, exc, lambda: self._call_fn(w.values),
                                               Batch([msg], w.acks))
            if not handled.recovered:
                return None
            extra = handled.value
        if isinstance(extra, Mapping):
            value.update(extra)
        else:
            value["result"] = extra
        return msg

    async def _call_fn(self, values: list[Any]) -> Any:
        assert self.fn is not None
        result = self.fn(values)
        if inspect.isawaitable(result):
            result = await result
        return result
