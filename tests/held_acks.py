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
    """Emits each step as one batch; before step i waits until the sink has seen ``after[i]`` writes."""

    def __init__(self, steps: list[list[Any]], after: list[int]) -> None:
        super().__init__()
        self.steps, self.after = steps, after
        self.sink: WatermarkSink | None = None
        self.committed: dict[Any, Any] = {}
        self._i = self._offset = 0

    async def read(self) -> Batch | None:
        if self._i >= len(self.steps):
            return None
        assert self.sink is not None
        async with asyncio.timeout(20):
            while len(self.sink.writes) < self.after[self._i]:
                await asyncio.sleep(0.002)
        values = self.steps[self._i]
        self._i += 1
        start = self._offset
        self._offset += len(values)
        msgs = [Message(v, topic="steps", partition=0, offset=start + j) for j, v in enumerate(values)]
        return Batch(msgs, [self.tracker.track(0, self._offset)])

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        self.committed.update(positions)
