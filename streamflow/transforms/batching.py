"""batch and unbatch: group events into list events, and split list events back up."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from pydantic import Field

from ..core.acks import Ack
from ..core.batch import Batch
from ..core.message import Message
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig, Transform, TransformConfig
from .base import EventTransform


class BatchConfig(TransformConfig):
    size: int = Field(ge=1, description="events per group; a group is emitted as soon as it is full")
    timeout: float | None = Field(None, gt=0, description="seconds after its first event a partial "
                                                          "group is emitted anyway (null: only when "
                                                          "full or at end of stream)")


class _Held:
    """The acks of one input batch and how many of its events are still held."""

    __slots__ = ("acks", "left", "created")

    def __init__(self, batch: Batch) -> None:
        self.acks = batch.acks
        self.left = len(batch.messages)
        self.created = batch.created


@TRANSFORMS.register("batch")
class BatchEvents(Transform[BatchConfig]):
    """Group events into one event per ``size`` events whose value is the list of their values.

    The group event keeps the metadata (key, timestamp, source position) of its
    first event. Held events keep their input batches' acks: a source position
    is released only once every event it covers has left in an emitted group.
    """

    def setup(self) -> None:
        timeout = self.config.timeout
        self.tick_interval = min(timeout / 4, 1.0) if timeout is not None else None
        #: Monotonic clock, replaceable in tests.
        self.clock = time.monotonic
        self._pending: list[Message] = []
        self._held: deque[_Held] = deque()
        self._started = 0.0  # clock() when the oldest held event arrived

    async def process(self, batch: Batch) -> Batch | None:
        msgs = batch.messages
        if not msgs:
            batch.ack()
            return None
        if not self._pending:
            self._started = self.clock()
        self._pending.extend(msgs)
        self._held.append(_Held(batch))
        size = self.config.size
        full = len(self._pending) // size * size
        if full:
            return self._emit(full)
        return self._due()

    async def tick(self) -> Batch | None:
        return self._due()

    async def flush(self) -> list[Batch]:
        return [self._emit(len(self._pending))] if self._pending else []

    def _due(self) -> Batch | None:
        timeout = self.config.timeout
        if self._pending and timeout is not None and self.clock() - self._started >= timeout:
            return self._emit(len(self._pending))
        return None

    def _emit(self, n: int) -> Batch:
        """One batch of the groups of the first ``n`` held events, with the acks they need."""
        pending, size = self._pending, self.config.size
        taken, self._pending = pending[:n], pending[n:]
        if self._pending:
            self._started = self.clock()
        groups = [taken[i].copy(value=[m.value for m in taken[i:i + size]], raw=None)
                  for i in range(0, n, size)]
        acks: list[Ack] = []
        held = self._held
        created = held[0].created
        while n:
            h = held[0]
            if h.left <= n:  # fully emitted: its reference moves to the output
                n -= h.left
                held.popleft()
                acks.extend(h.acks)
            else:  # partly emitted: the output needs a reference of its own
                h.left -= n
                n = 0
                for a in h.acks:
                    a.retain()
                acks.extend(h.acks)
        return Batch(groups, acks, created)


class UnbatchConfig(EventTransformConfig):
    """unbatch takes only the keys every transform takes."""


@TRANSFORMS.register("unbatch")
class Unbatch(EventTransform[UnbatchConfig]):
    """Replace each event whose value is a list by one event per item (an empty list drops it).

    A value that is not a list goes to the stage's error policy.
    """

    def call(self, msg: Message) -> Any:
        value = msg.value
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"unbatch expects a list value, got {type(value).__name__}")
        return value

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        out.extend(msg.copy(value=v) for v in result)
