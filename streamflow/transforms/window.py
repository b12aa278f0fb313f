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

An event behind the watermark whose windows are all closed is *late*, counted
in ``late`` (`streamflow_late_events_total`) and sent to the ``late`` output:
``drop`` (also counted as filtered), ``error`` (the stage's ``on_error``),
``dead_letter`` or ``{sink: name}`` (`LateOutput`).

Where open windows live: with a partitioned input (one Kafka topic) in a
`WindowStore` per input partition, logged to a changelog and restored on
assignment, so the inputs' positions are committed while windows are open and
the windows survive a restart; they are emitted when they close, not at
shutdown. Otherwise (files, generator) in memory, where a window holds the acks
of the input batches that fed it until it is written (`window_state`), and the
windows still open at the end of the stream or at shutdown are emitted then.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ..core.acks import Ack
from ..core.batch import Batch
from ..core.errors import ErrorHandler, ErrorPolicy
from ..core.message import Message
from ..core.registry import TRANSFORMS
from ..core.stage import StageContext, Transform
from ..state.watermarks import WatermarkTracker
from ..state.windows import Hopping, Sliding, TimeWindow, Tumbling, Windows
from .aggregations import AGGREGATIONS, Aggregation, aggregation, parse_aggregate
from .fields import path_getter
from .partitioned import StoreBacked, owned
from .window_config import LateSink, WindowConfig
from .window_late import LateEvent, LateOutput
from .window_state import AckHolds, WindowFold, WindowState
from .window_store import WindowStore

__all__ = ["AGGREGATIONS", "Aggregation", "LateEvent", "Window", "WindowConfig", "aggregation",
           "parse_aggregate"]

Closed = list[tuple[Hashable, TimeWindow, WindowState]]
_KEY: Any = object()  # `Window._add`: the key comes from the event


@TRANSFORMS.register("window")
class Window(StoreBacked[WindowStore], Transform[WindowConfig]):
    """Tumbling windows of ``size`` seconds, or hopping, sliding or session windows, per ``key``.

    By event time (``event_time`` or ``time_field``; a watermark per input
    partition closes windows) or processing time. When a window closes it
    emits one event ``{window_start, window_end, key?, <aggregates>…}``
    (built-in aggregations or a user function). An event behind the watermark
    is late: counted, and dropped or sent to the ``late`` output. With a Kafka
    input the open windows live in a state store per input partition
    (`WindowStore`); otherwise in memory, holding their inputs' positions
    uncommitted until they are written.
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
        self.late = LateOutput(self.name, cfg.late)

    def _tick_interval(self) -> float | None:
        """How often `tick` looks for due windows: processing time, or idle partitions."""
        cfg = self.config
        if self.event_time:
            return None if cfg.idle_timeout is None else min(cfg.idle_timeout / 2, 1.0)
        span = cfg.gap if cfg.kind == "session" else cfg.step if cfg.kind == "hopping" else cfg.size
        assert span is not None
        return min(span / 4, 1.0)

    # -- state per input partition ------------------------------------------------------
    def new_store(self) -> WindowStore:
        cfg = self.config
        return WindowStore(self.name, self.assigner, self.fold, cfg.state_backend, cfg.state_dir, self.tracker)

    def side_outputs(self) -> list[str]:
        late = self.config.late
        return [late.sink] if isinstance(late, LateSink) else []

    def error_policies(self) -> list[ErrorPolicy]:
        late = [ErrorPolicy(policy="dead_letter")] if self.config.late == "dead_letter" else []
        return [*super().error_policies(), *late]

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)
        self.late.open(ctx)
        self.bind_store(self.name, ctx)

    @property
    def watermark(self) -> float | None:
        """Time below which windows are complete: the event-time watermark, or the clock."""
        return self.tracker.watermark if self.tracker is not None else self.clock()

    # -- intake -----------------------------------------------------------------------
    async def process(self, batch: Batch) -> Batch | None:
        if self.stored is not None:
            return await self._process_stored(batch)
        watermark = self.watermark  # late is judged against the watermark before this batch
        now = None if self.event_time else watermark
        self.fold.begin(batch)
        maxes: dict[Hashable, float] = {}  # partition -> latest event time in this batch
        late: list[Message] = []
        for m in batch.messages:
            try:
                t = self._event_time(m, now, maxes)
                if self._add(self.windows, m, t, watermark, _KEY) is None:
                    self.late.take(m, t, watermark, late)
            except Exception as exc:  # noqa: BLE001 - the error policy decides
                await self.errors.handle(m, exc, None, batch)
        self._observe(maxes)
        await self.late.send(late, batch)
        if self.holds is not None and maxes:
            assert isinstance(self.assigner, Sliding)
            self.holds.hold(batch, max(maxes.values()) + self.assigner.size)
        else:
            batch.ack()  # the windows hold their own references
        return await self._close(self.watermark)

    async def _process_stored(self, batch: Batch) -> Batch | None:
        """`process` with the windows in the store: replays skipped, acks released once logged."""
        store = self.stored
        assert store is not None
        batch = owned(batch, store.owns)
        watermark = self.watermark
        now = None if self.event_time else watermark
        self.fold.begin(batch, hold_acks=False)
        maxes: dict[Hashable, float] = {}
        late: list[Message] = []
        for m in batch.messages:
            try:
                t = self._event_time(m, now, maxes)
                windows = store.enter(m)
                key = self._key(m.value) if self._key is not None else None
                if store.replayed(m, key):  # in the windows already; late again if it is behind
                    if self.assigner.behind(t, watermark):
                        self.late.take(m, t, watermark, late)
                elif self._add(windows, m, t, watermark, key) is None:
                    self.late.take(m, t, watermark, late)
                else:
                    store.touched(m, key)
            except Exception as exc:  # noqa: BLE001 - the error policy decides
                store.write()  # before awaiting: a flush meanwhile must find every change up to `applied`
                await self.errors.handle(m, exc, None, batch)
        self._observe(maxes)
        store.observed(maxes)
        store.write()
        await self.late.send(late, batch)
        out = await self._close(self.watermark, batch)
        store.commit(batch)
        batch.ack()  # the changelog flush holds its own reference
        return out

    def _event_time(self, m: Message, now: float | None, maxes: dict[Hashable, float]) -> float:
        """``m``'s event time (``now`` with processing time), kept in ``maxes`` if its partition's latest."""
        t = self._time(m) if self._time is not None else now
        assert t is not None
        if t > maxes.get(m.partition, -math.inf):
            maxes[m.partition] = t
        return t

    def _observe(self, maxes: dict[Hashable, float]) -> None:
        if self.tracker is not None:
            for part, latest in maxes.items():
                self.tracker.observe(part, latest)

    def _add(self, windows: Windows[WindowState], msg: Message, t: float, watermark: float | None,
             key: Any) -> tuple[Hashable] | None:
        """Fold ``msg`` into its windows under ``key`` (`_KEY`: its own): ``(key,)``, or None if it is late."""
        value = msg.value
        if key is _KEY:
            key = self._key(value) if self._key is not None else None
        if self._precheck:
            self.fold.check(t, value)
        if windows.add(key, t, value, watermark) is None:
            return None
        return (key,)

    # -- output -----------------------------------------------------------------------
    async def tick(self) -> Batch | None:
        out = await self._close(self.watermark)
        if self.stored is not None:
            self.stored.commit(Batch([]))  # windows written since the last batch leave the store
        return out

    async def flush(self) -> list[Batch]:
        store = self.stored
        if store is not None:  # open windows stay in the store: they are emitted when they close
            out = await self._emit_stored(store.due(None))
            store.commit(Batch([]))
            await store.keyed.drain()
            return [out] if out is not None else []
        out = await self._emit(self.windows.flush())
        if self.holds is not None:
            self.holds.release_all()
        return [out] if out is not None else []

    async def _close(self, watermark: float | None, batch: Batch | None = None) -> Batch | None:
        """Emit the windows complete at ``watermark``, then let go of batches no window needs.

        With the store, the output holds ``batch``'s positions too (a rebalance waits for it)."""
        if self.stored is not None:
            return await self._emit_stored(self.stored.due(watermark), batch)
        out = await self._emit(self.windows.close(watermark))
        if self.holds is not None:
            self.holds.release(watermark)
        return out

    async def _emit_stored(self, closed: list[tuple[int, Hashable, TimeWindow, WindowState]],
                           batch: Batch | None = None) -> Batch | None:
        """Emit windows closed in the store; they leave it once their output batch is written."""
        if not closed:
            return None
        assert self.store is not None
        acks = [self.store.closing(closed)]
        if batch is not None:
            batch.retain()
            acks.extend(batch.acks)
        return await self._emit([(key, w, s) for _, key, w, s in closed], acks)

    async def _emit(self, closed: Closed, extra: list[Ack] | None = None) -> Batch | None:
        if not closed:
            return None
        out: list[Message] = []
        acks: list[Ack] = list(extra or ())
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
