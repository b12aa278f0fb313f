"""window: tumbling, hopping, sliding and session windows by event or processing time, per key.

Each event goes into its windows (see `streamflow.state.windows` for the
kinds) per key (``key`` field or ``key_fn``). Event time comes from
``event_time`` (or ``time_field``); without it, the wall clock when the event
arrives. With event time a watermark per input partition (`WatermarkTracker`:
the latest event time minus ``allowed_lateness``, the minimum over partitions,
quiet ones left out after ``idle_timeout``) decides when a window is complete;
with processing time the clock does. A complete window emits one event
``{window_start, window_end, key?, <aggregates>…}``; the windows still open at
the end of the stream or at shutdown are emitted then.

An event behind the watermark whose windows are all closed is *late*: with
``late: drop`` it is counted as filtered, with ``late: error`` it goes to the
stage's ``on_error`` (so ``dead_letter`` keeps it). Acks: a window holds the
acks of the input batches that fed it until it is written (`window_state`).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ..core.acks import Ack
from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.registry import TRANSFORMS
from ..core.stage import StageContext, Transform
from ..state.watermarks import WatermarkTracker
from ..state.windows import Hopping, Sliding, TimeWindow, Tumbling, Windows
from .aggregations import AGGREGATIONS, Aggregation, aggregation, parse_aggregate
from .fields import path_getter
from .window_config import WindowConfig
from .window_state import AckHolds, WindowFold, WindowState

__all__ = ["AGGREGATIONS", "Aggregation", "LateEvent", "Window", "WindowConfig", "aggregation",
           "parse_aggregate"]

Closed = list[tuple[Hashable, TimeWindow, WindowState]]


class LateEvent(Exception):
    """An event arrived after all its windows closed (``late: error``)."""


@TRANSFORMS.register("window")
class Window(Transform[WindowConfig]):
    """Tumbling windows of ``size`` seconds, or hopping, sliding or session windows, per ``key``.

    By event time (``event_time`` or ``time_field``; a watermark per input
    partition closes windows) or processing time. When a window closes it
    emits one event ``{window_start, window_end, key?, <aggregates>…}``
    (built-in aggregations or a user function). An event behind the watermark
    is late: dropped and counted, or sent to ``on_error``. The inputs'
    positions are committed only once every window holding them is written.
    """

    def setup(self) -> None:
        cfg = self.config
        self.assigner = cfg.assigner()
        sliding = isinstance(self.assigner, Sliding)
        self.fold = WindowFold(cfg.aggregate, keep_values=cfg.fn is not None, owns_acks=not sliding)
        self.windows: Windows[WindowState] = Windows(self.assigner, self.fold)
        #: Sliding windows: input batches held until no open window can take their events.
        self.holds = AckHolds() if sliding else None
        source = cfg.time_source()
        self._time = source.extractor() if source is not None else None
        self.event_time = source is not None
        self.tracker = WatermarkTracker(cfg.allowed_lateness, cfg.idle_timeout) if self.event_time else None
        self._key: Callable[[Any], Any] | None = \
            path_getter(cfg.key) if cfg.key is not None else cfg.key_fn
        #: Hopping windows overlap: an event is checked once before it enters several.
        self._precheck = isinstance(self.assigner, Hopping) and not isinstance(self.assigner, Tumbling) \
            and self.assigner.step < self.assigner.size
        self.fn = cfg.fn
        self.errors = ErrorHandler(self.name, cfg.on_error)
        #: Wall clock (epoch seconds) for processing time, replaceable in tests.
        self.clock = time.time
        self.tick_interval = self._tick_interval()

    def _tick_interval(self) -> float | None:
        """How often `tick` looks for due windows: processing time, or idle partitions."""
        cfg = self.config
        if self.event_time:
            return None if cfg.idle_timeout is None else min(cfg.idle_timeout / 2, 1.0)
        span = cfg.gap if cfg.kind == "session" else cfg.step if cfg.kind == "hopping" else cfg.size
        assert span is not None
        return min(span / 4, 1.0)

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)

    @property
    def watermark(self) -> float | None:
        """Time below which windows are complete: the event-time watermark, or the clock."""
        return self.tracker.watermark if self.tracker is not None else self.clock()

    # -- intake -----------------------------------------------------------------------
    async def process(self, batch: Batch) -> Batch | None:
        watermark = self.watermark  # late is judged against the watermark before this batch
        now = None if self.event_time else watermark
        self.fold.begin(batch)
        maxes: dict[Hashable, float] = {}  # partition -> latest event time in this batch
        for m in batch.messages:
            try:
                t = self._time(m) if self._time is not None else now
                assert t is not None
                if t > maxes.get(m.partition, -math.inf):
                    maxes[m.partition] = t
                self._add(m, t, watermark)
            except Exception as exc:  # noqa: BLE001 - the error policy decides
                await self.errors.handle(m, exc, None, batch)
        if self.tracker is not None:
            for part, latest in maxes.items():
                self.tracker.observe(part, latest)
        if self.holds is not None and maxes:
            assert isinstance(self.assigner, Sliding)
            self.holds.hold(batch, max(maxes.values()) + self.assigner.size)
        else:
            batch.ack()  # the windows hold their own references
        return await self._close(self.watermark)

    def _add(self, msg: Message, t: float, watermark: float | None) -> None:
        """Fold ``msg`` into its windows; a late one is counted (``drop``) or raised (``error``)."""
        value = msg.value
        key = self._key(value) if self._key is not None else None
        if self._precheck:
            self.fold.check(t, value)
        if self.windows.add(key, t, value, watermark) is not None:
            return
        if self.config.late == "error":
            raise LateEvent(f"event time {t} is behind the watermark {watermark}: "
                            "every window it belongs to is closed")
        if self.ctx is not None:
            self.ctx.stats.filtered += 1

    # -- output -----------------------------------------------------------------------
    async def tick(self) -> Batch | None:
        return await self._close(self.watermark)

    async def flush(self) -> list[Batch]:
        out = await self._emit(self.windows.flush())
        if self.holds is not None:
            self.holds.release_all()
        return [out] if out is not None else []

    async def _close(self, watermark: float | None) -> Batch | None:
        """Emit the windows complete at ``watermark``, then let go of batches no window needs."""
        out = await self._emit(self.windows.close(watermark))
        if self.holds is not None:
            self.holds.release(watermark)
        return out

    async def _emit(self, closed: Closed) -> Batch | None:
        if not closed:
            return None
        out: list[Message] = []
        acks: list[Ack] = []
        for key, window, state in closed:
            held = self.fold.emit(state)
            acks.extend(held)
            msg = await self._result(key, window, state, held)
            if msg is not None:
                out.append(msg)
        return Batch(out, acks, min(state.created for _, _, state in closed))

    async def _result(self, key: Any, window: TimeWindow, state: WindowState, acks: list[Ack]) -> Message | None:
        value: dict[str, Any] = {"window_start": window.start, "window_end": window.end}
        if self._key is not None:
            value["key"] = key
        value.update(self.fold.results(state))
        msg = Message(value, key=key if key is None or isinstance(key, (str, bytes)) else str(key))
        if self.fn is None:
            return msg
        values = state.values or []
        try:
            extra = await self._call_fn(values)
        except Exception as exc:  # noqa: BLE001 - the error policy decides
            handled = await self.errors.handle(msg, exc, lambda: self._call_fn(values), Batch([msg], acks))
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
