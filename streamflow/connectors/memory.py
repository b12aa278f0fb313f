"""In-memory source and sink: for tests and for embedding streamflow in other code."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pydantic import Field

from ..core.batch import Batch
from ..core.message import Message
from ..core.registry import SINKS, SOURCES
from ..core.stage import ComponentConfig, Sink, Source, SourceConfig


class MemorySourceConfig(SourceConfig):
    values: list[Any] = Field(default_factory=list, description="the events to emit, in order")
    batch_size: int = Field(100, ge=1)
    partitions: int = Field(1, ge=1, description="spread events round-robin over this many partitions")


@SOURCES.register("memory")
class MemorySource(Source[MemorySourceConfig]):
    """Emits a fixed list of values; positions are list indexes per partition.

    ``committed`` holds what a real source would have checkpointed.
    """


    def setup(self) -> None:
        self.committed: dict[Any, Any] = {}
        self._pos = 0

    async def read(self) -> Batch | None:
        values = self.config.values
        if self._pos >= len(values):
            return None
        await asyncio.sleep(0)
        n = self.config.partitions
        size = self.config.batch_size
        start, end = self._pos, min(self._pos + size * n, len(values))
        self._pos = end
        by_part: dict[int, list[Message]] = {}
        for i in range(start, end):
            part = i % n
            by_part.setdefault(part, []).append(
                Message(values[i], topic="memory", partition=part, offset=i))
        if n == 1:
            msgs = by_part[0]
            return Batch(msgs, [self.tracker.track(0, end)])
        msgs, acks = [], []
        for part, pm in by_part.items():
            msgs.extend(pm)
            acks.append(self.tracker.track(part, (pm[-1].offset or 0) + 1))
        return Batch(msgs, acks)

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        self.committed.update(positions)


class MemorySinkConfig(ComponentConfig):
    delay: float = Field(0.0, ge=0, description="seconds to sleep per batch (a deliberately slow sink)")


@SINKS.register("memory")
class MemorySink(Sink[MemorySinkConfig]):
    """Collects every written message in ``messages`` (values in ``values``)."""


    def setup(self) -> None:
        self.messages: list[Message] = []

    @property
    def values(self) -> list[Any]:
        return [m.value for m in self.messages]

    async def write(self, batch: Batch) -> None:
        if self.config.delay:
            await asyncio.sleep(self.config.delay)
        self.messages.extend(batch.messages)


def values_of(messages: Iterable[Message]) -> list[Any]:
    return [m.value for m in messages]
