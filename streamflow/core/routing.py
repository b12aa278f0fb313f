"""`Router`: fans the last stage's batches out to the sinks, by their ``when`` predicates."""

from __future__ import annotations

from collections.abc import Sequence

from .batch import Batch
from .channel import Channel
from .pipeline import SinkRoute


class Router:
    """Delivers each batch to every sink whose route selects some of its events.

    A route without ``when`` gets the batch itself; one with ``when`` gets a
    `Batch.derive` of the events it selects, or nothing. The batch's acks are
    retained once per extra receiver, so a source position is acknowledged only
    once every sink it went to acknowledged it (contract 2); a batch no route
    selects is acknowledged at once.
    """

    def __init__(self, routes: Sequence[SinkRoute], channels: Sequence[Channel]) -> None:
        if len(routes) != len(channels):
            raise ValueError("one channel per route")
        self.routes = list(zip(routes, channels, strict=True))

    async def run(self, inp: Channel) -> None:
        """Route every batch of ``inp`` until it ends, then close the sink channels."""
        try:
            while (batch := await inp.get()) is not None:
                await self._fan_out(batch)
        finally:
            for _, ch in self.routes:
                ch.close()

    async def _fan_out(self, batch: Batch) -> None:
        targets: list[tuple[Channel, Batch]] = []
        for route, ch in self.routes:
            when = route.when
            if when is None:
                targets.append((ch, batch))
            else:
                chosen = [m for m in batch.messages if when(m.value)]
                if chosen:
                    targets.append((ch, batch.derive(chosen)))
        if not targets:
            batch.ack()
            return
        batch.retain(len(targets) - 1)
        for ch, b in targets:
            await ch.put(b)
