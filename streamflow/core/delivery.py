"""`Delivery`: writes a sink's batches, retrying an outage with the `Backoff` and never dropping data."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .backoff import Backoff
from .batch import Batch
from .channel import Channel
from .error_text import describe
from .errors import PipelineFailed
from .result import RunnerHooks
from .stage import Sink
from .stats import StageStats
from .tracing import BatchTracer

log = logging.getLogger("streamflow.runner")


class Delivery:
    """Feeds one sink from its channel: write, count, acknowledge; flush at the end.

    A write or flush that raises is retried with ``retry`` (`Backoff`) while
    the channel fills up behind it, so the outage holds the source back
    (contract 1) and no batch is dropped (contract 5). `PipelineFailed` (the
    sink says retrying cannot help) and exhausted attempts fail the pipeline.
    A batch is acknowledged only after the sink wrote it, unless the sink
    acknowledges itself (``acks_itself``).
    """

    def __init__(self, sink: Sink[Any], stats: StageStats, hooks: Sequence[RunnerHooks], retry: Backoff,
                 tracer: BatchTracer | None = None) -> None:
        self.sink = sink
        self.stats = stats
        self.hooks = hooks
        self.retry = retry
        self.tracer = tracer
        #: Whether a write (or its retries) is running: events wait in it.
        self.writing = False

    async def run(self, inp: Channel) -> None:
        """Write every batch of ``inp`` until it ends, then flush the sink."""
        sink, stats = self.sink, self.stats
        while (batch := await inp.get()) is not None:
            n = len(batch.messages)
            stats.events_in += n
            stats.batches_in += 1
            started = time.perf_counter()
            self.writing = True
            if self.tracer is None:
                await self._retrying("write", lambda: sink.write(batch))  # noqa: B023 - awaited at once
            else:
                await self.tracer.write(sink.name, batch, self._write)
            self.writing = False
            elapsed = time.perf_counter() - started
            stats.busy_seconds += elapsed
            for h in self.hooks:
                h.batch_written(stats, batch, elapsed)
            if not sink.acks_itself:
                batch.ack()
            if not sink.counts_delivered:
                stats.events_out += n
                stats.batches_out += 1
                stats.last_event_at = time.monotonic()
        await self._retrying("flush", sink.flush)

    async def _write(self, batch: Batch) -> None:
        """``sink.write(batch)``, retried."""
        await self._retrying("write", lambda: self.sink.write(batch))

    async def _retrying(self, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """``call()`` until it succeeds, waiting `Backoff.delay` between attempts."""
        attempt = 0
        while True:
            try:
                await call()
                if attempt:
                    log.info("sink %s recovered after %d retries", self.sink.name, attempt)
                return
            except PipelineFailed:
                raise  # the sink says retrying cannot help (e.g. its reader went away)
            except Exception as exc:  # noqa: BLE001 - any other sink failure is retried
                attempt += 1
                self.stats.retries += 1
                if self.retry.exhausted(attempt):
                    raise PipelineFailed(f"sink {self.sink.name!r} {what} failed {attempt} times: "
                                         f"{describe(exc)}") from exc
                delay = self.retry.delay(attempt)
                log.warning("sink %s %s failed (%s); retry %d in %.2fs", self.sink.name, what,
                            describe(exc), attempt, delay)
                await asyncio.sleep(delay)
