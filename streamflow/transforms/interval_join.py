"""interval_join: a windowed stream–stream join of two Kafka topics on a key.

The Kafka source reads both topics (``topics: [orders, payments]``); the join
tells the sides apart by topic (``left``, ``right``). A left event at time
``t`` and a right event at time ``s`` with the same key are joined when
``t - before <= s <= t + after``. Each such pair comes out once, when the
second of the two is processed, as an event ``{left: …, right: …}`` (field
names ``left_as`` / ``right_as``) with the Kafka key and position of that
second event.

Both sides are buffered per key in state stores (`streamflow.state.keyed`),
one state per side, partitioned like the input and restored from a changelog
topic on assignment, so buffered events survive a restart. A watermark over
the partitions of both topics (`WatermarkTracker`: latest event time minus
``allowed_lateness``, the minimum over partitions) expires them: a left event
once the watermark passes ``t + after``, a right one once it passes
``s + before`` — no event that is not late can match them any more. An event
behind the watermark is *late*: its partners may be expired, so it is dropped
(counted as filtered, ``late: drop``) or sent to ``on_error`` (``late: error``).

The two topics must be co-partitioned (the same partition count, checked at
the first assignment; the source then assigns partition *p* of both topics to
one member). Under at-least-once a replayed event is not buffered twice, but
its pairs are emitted again.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Hashable
from typing import Any, Literal

import orjson
from pydantic import Field, model_validator

from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.partitions import PartitionListener, StateRestore
from ..core.registry import TRANSFORMS
from ..core.stage import StageContext, Transform
from ..state.copartition import KeyPartitions, NotCoPartitioned, check_copartitioned, partition_counts
from ..state.keyed import KeyedState
from ..state.watermarks import WatermarkTracker
from .join_keys import JoinKeyConfig, check_key, join_key, source_connection
from .window import LateEvent


class IntervalJoinConfig(JoinKeyConfig):
    left: str = Field(description="topic of the left side (the source reads it and `right`)")
    right: str = Field(description="topic of the right side")
    before: float = Field(ge=0, description="seconds a right event may come before the left one")
    after: float = Field(ge=0, description="seconds a right event may come after the left one")
    left_as: str = Field("left", description="field of the output that holds the left event")
    right_as: str = Field("right", description="field of the output that holds the right event")
    allowed_lateness: float = Field(0.0, ge=0, description="the watermark of a partition is its latest "
                                                           "event time minus this")
    idle_timeout: float | None = Field(None, gt=0, description=(
        "seconds without events after which a partition stops holding the watermark back"))
    late: Literal["drop", "error"] = Field("drop", description="an event behind the watermark: drop it "
                                                               "(counted as filtered) or send it to `on_error`")

    @model_validator(mode="after")
    def _check(self) -> IntervalJoinConfig:
        if self.left == self.right:
            raise ValueError("`left` and `right` must be two different topics")
        if self.left_as == self.right_as:
            raise ValueError("`left_as` and `right_as` must differ")
        return self


class _Side:
    """One side of the join: its topic, its buffered events per key, how long they may still match."""

    def __init__(self, index: int, topic: str, keyed: KeyedState, state: str, horizon: float) -> None:
        self.index = index
        self.topic = topic
        self.keyed = keyed
        self.state = state
        #: An event at time t may still match until the watermark passes t + horizon.
        self.horizon = horizon


@TRANSFORMS.register("interval_join")
class IntervalJoin(Transform[IntervalJoinConfig]):
    """Join the events of two co-partitioned Kafka topics with the same key within a time interval.

    A left event at ``t`` and a right one at ``s`` are joined when
    ``t - before <= s <= t + after``; each pair comes out once, as
    ``{left_as: …, right_as: …}``. Both sides wait in state stores restored
    from changelog topics, expired by the watermark; late events are dropped
    (counted) or sent to ``on_error``.
    """

    input_topics = 2

    def setup(self) -> None:
        cfg = self.config
        self._key = cfg.key_getter()
        self._time = cfg.time_getter()
        self.errors = ErrorHandler(self.name, cfg.on_error)
        self.tracker = WatermarkTracker(cfg.allowed_lateness, cfg.idle_timeout)
        stage = cfg.name or self.type_name
        self.sides: list[_Side] = []
        for index, (topic, horizon) in enumerate(((cfg.left, cfg.after), (cfg.right, cfg.before))):
            state = f"{stage}-{('left', 'right')[index]}"
            keyed = KeyedState(stage, {state: "value"}, cfg.state_backend, cfg.state_dir)
            self.sides.append(_Side(index, topic, keyed, state, horizon))
        self._by_topic = {side.topic: side for side in self.sides}
        self._home: KeyPartitions | None = None  # key -> partition, once the partition counts are checked
        #: (expires at, side, partition, key) of every buffered event (several per key: popped lazily).
        self._expiry: list[tuple[float, int, int, bytes]] = []

    def serial_reason(self) -> str | None:
        return "its state is applied in input order, one event at a time"

    def partition_listener(self) -> PartitionListener | None:
        return self

    def state_restores(self) -> list[StateRestore]:
        return [r for side in self.sides for r in side.keyed.restores]

    @property
    def ready(self) -> bool:
        """False while a side's state is being restored."""
        return all(side.keyed.ready for side in self.sides)

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)
        for side in self.sides:
            side.keyed.stage = self.name
            side.keyed.on_failure = ctx.fail

    async def close(self) -> None:
        for side in self.sides:
            await side.keyed.close()

    async def flush(self) -> list[Batch]:
        for side in self.sides:
            await side.keyed.drain()
        return []

    # -- the partition listener ------------------------------------------------------------
    async def assigned(self, source: object, topic: str, partitions: Collection[int], total: int) -> None:
        """Check co-partitioning (first time); restore ``topic``'s side for ``partitions``."""
        side = self._by_topic.get(topic)
        if side is None:
            raise ValueError(f"interval_join {self.name!r} joins {self.config.left!r} and "
                             f"{self.config.right!r}; the source reads {topic!r} too")
        if self._home is None:
            connection, pipeline = source_connection(source, self.name)
            cfg = self.config
            counts = await partition_counts(connection, [cfg.left, cfg.right], f"streamflow-{pipeline}-{self.name}")
            check_copartitioned(cfg.left, counts[cfg.left], cfg.right, counts[cfg.right])
            self._home = KeyPartitions(counts[cfg.left])
        await side.keyed.assigned(source, topic, partitions, total)
        self.tracker.assign((topic, p) for p in partitions)
        for p in partitions:  # what the restore brought back expires like what arrives
            scope = side.keyed.scope(p)
            if scope is not None:
                for key, raw in scope[side.state].store.items():
                    latest = max(t for t, _ in orjson.loads(raw))
                    heapq.heappush(self._expiry, (latest + side.horizon, side.index, p, key))

    async def revoked(self, topic: str, partitions: Collection[int]) -> None:
        side = self._by_topic.get(topic)
        if side is not None:
            await side.keyed.revoked(topic, partitions)
            self.tracker.forget((topic, p) for p in partitions)

    # -- events ------------------------------------------------------------------------------
    async def process(self, batch: Batch) -> Batch:
        watermark = self.tracker.watermark  # late is judged against the watermark before this batch
        out: list[Message] = []
        latest: dict[Hashable, float] = {}
        dropped = 0
        for m in batch.messages:
            side = self._by_topic.get(m.topic or "")
            if side is None or not side.keyed.owns(m):
                continue  # a straggler of a revoked partition: its next owner reads it again
            try:
                t = self._time(m)
                pairs = self._add(side, m, t, watermark)
            except Exception as exc:  # noqa: BLE001 - the error policy decides
                await self.errors.handle(m, exc, None, batch)
                continue
            if pairs is None:
                dropped += 1
                continue
            out.extend(pairs)
            if t > latest.get((m.topic, m.partition), float("-inf")):
                latest[(m.topic, m.partition)] = t
        for part, t in latest.items():
            self.tracker.observe(part, t)
        self._expire(self.tracker.watermark)
        if self.ctx is not None and dropped:
            self.ctx.stats.filtered += dropped
        result = batch.derive(out)
        for side in self.sides:  # both: expiry may have changed the other side's state
            side.keyed.hold_until_flushed(result)
        return result

    def _add(self, side: _Side, msg: Message, t: float, watermark: float | None) -> list[Message] | None:
        """Buffer ``msg`` and return its pairs with the other side (None: late, dropped)."""
        assert msg.partition is not None
        key = join_key(self._key(msg))
        if self.config.check_keys and self._home is not None:
            check_key(key, msg, self._home, self.sides[1 - side.index].topic)
        if watermark is not None and t < watermark:
            if self.config.late == "error":
                raise LateEvent(f"event time {t} is behind the watermark {watermark}: its partners may be "
                                "expired already")
            return None
        other = self.sides[1 - side.index].keyed.scope(msg.partition)
        if other is None:
            raise NotCoPartitioned(f"this member reads {msg.topic}[{msg.partition}] but not partition "
                                   f"{msg.partition} of {self.sides[1 - side.index].topic!r}")
        view = side.keyed.enter(msg, key)[side.state]
        view.set([*view.get([]), [t, msg.value]])
        heapq.heappush(self._expiry, (t + side.horizon, side.index, msg.partition, key))
        partner = other[self.sides[1 - side.index].state]
        partner.bind(key)
        cfg = self.config
        low, high = (t - cfg.before, t + cfg.after) if side.index == 0 else (t - cfg.after, t + cfg.before)
        names = (cfg.left_as, cfg.right_as) if side.index == 0 else (cfg.right_as, cfg.left_as)
        return [msg.copy(value={names[0]: msg.value, names[1]: value})
                for s, value in partner.get([]) if low <= s <= high]

    def _expire(self, watermark: float | None) -> None:
        """Drop the buffered events no event that is not late can match any more."""
        heap = self._expiry
        while heap and watermark is not None and heap[0][0] < watermark:
            _, index, partition, key = heapq.heappop(heap)
            side = self.sides[index]
            scope = side.keyed.scope(partition)
            if scope is None:
                continue  # revoked since
            view = scope[side.state]
            view.bind(key)
            entries: list[Any] = view.get([])
            keep = [e for e in entries if e[0] + side.horizon >= watermark]
            if len(keep) == len(entries):
                continue
            if keep:
                view.set(keep)
            else:
                view.clear()
