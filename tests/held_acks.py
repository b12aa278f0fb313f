"""Test doubles for transforms that hold events back: they record the commit watermark per write."""

from __future__ import annotations

import asyncio
from typing import Any

from streamflow import Batch, Message, Source
from streamflow.connectors.memory import MemorySink


class WatermarkSink(MemorySink):
    """Records, per write, the values and the source's commit watermark at that moment."""

    def __init__(self, source: Source, partition: Any = 0) -> None:
        super().__init__()
        self.source = source
        self.partition = partition
        self.writes: list[tuple[list[Any], Any]] = []

    async def write(self, batch: Batch) -> None:
        self.writes.append(([m.value for m in batch.messages], self.source.tracker.watermark(self.partition)))
        await super().write(batch)


class StepSource(Source):
    """Emits each step as one batch; before step i waits until the sink has seen ``after[i]`` writes.

    Step i comes from partition ``partitions[i]`` (default: all from partition 0).
    """

    def __init__(self, steps: list[list[Any]], after: list[int], partitions: list[Any] | None = None) -> None:
        super().__init__()
        self.steps, self.after = steps, after
        self.partitions = partitions or [0] * len(steps)
        self.sink: WatermarkSink | None = None
        self.committed: dict[Any, Any] = {}
        self._i = 0
        self._offsets: dict[Any, int] = {}

    async def read(self) -> Batch | None:
        if self._i >= len(self.steps):
            return None
        assert self.sink is not None
        async with asyncio.timeout(20):
            while len(self.sink.writes) < self.after[self._i]:
                await asyncio.sleep(0.002)
        values, part = self.steps[self._i], self.partitions[self._i]
        self._i += 1
        start = self._offsets.get(part, 0)
        end = self._offsets[part] = start + len(values)
        msgs = [Message(v, topic="steps", partition=part, offset=start + j) for j, v in enumerate(values)]
        return Batch(msgs, [self.tracker.track(part, end)])

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        self.committed.update(positions)
