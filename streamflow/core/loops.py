"""The stage loops: how a source fills its channel and a transform turns one channel into the next.

Each loop is one supervised task of the `Runner`. They do per-batch work
only (counters, hooks, a channel operation); the per-event work belongs to
the stages themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from .batch import Batch
from .channel import Channel
from .result import RunnerHooks
from .stage import Source, Transform
from .stats import StageStats
from .tracing import BatchTracer

#: What `Transform.process`, `tick` and `flush` may return.
Output: TypeAlias = Batch | list[Batch] | None


async def source_loop(src: Source[Any], out: Channel, stats: StageStats, stopping: asyncio.Event,
                      tracer: BatchTracer | None = None) -> None:
    """Put ``src``'s batches into ``out`` until it is exhausted or ``stopping`` is set.

    A read still waiting when ``stopping`` is set is cancelled; a batch it
    returns anyway is kept (its positions are tracked already). A read still
    pending when this loop itself is cancelled (the pipeline failed) is
    cancelled and awaited before the loop ends, so it never outlives the
    source it reads from (the runner closes the source next).
    """
    stop_wait = asyncio.create_task(stopping.wait())
    read: asyncio.Future[Batch | None] | None = None
    try:
        while not stopping.is_set():
            read = asyncio.ensure_future(src.read() if tracer is None else tracer.read(src.name, src.read))
            done, _ = await asyncio.wait({read, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    batch = await read
                    if batch is not None:  # it finished while being cancelled: keep it
                        await _put_source_batch(batch, out, stats)
                break
            batch = read.result()
            if batch is None:
                break
            await _put_source_batch(batch, out, stats)
    finally:
        stop_wait.cancel()
        if read is not None and not read.done():
            read.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):  # its outcome no longer matters: the source closes
                await read


async def _put_source_batch(batch: Batch, out: Channel, stats: StageStats) -> None:
    n = len(batch.messages)
    if not n:
        batch.ack()
        return
    if not batch.created:
        batch.created = time.monotonic()
    if not stats.first_event_at:
        stats.first_event_at = batch.created
    stats.events_out += n
    stats.batches_out += 1
    await out.put(batch)


async def emit(result: Output, out: Channel, stats: StageStats) -> None:
    """Put a stage's non-empty output batches into ``out``; acknowledge the empty ones."""
    if result is None:
        return
    for b in (result,) if isinstance(result, Batch) else result:
        n = len(b.messages)
        if n:
            stats.events_out += n
            stats.batches_out += 1
            await out.put(b)
        else:
            b.ack()


async def transform_loop(t: Transform[Any], inp: Channel, out: Channel, stats: StageStats,
                         hooks: Sequence[RunnerHooks], tracer: BatchTracer | None = None) -> None:
    """One batch at a time through ``t``, in order; `Transform.tick` on its timer; flush at the end."""
    next_batch = _ticking_get(t, inp, out, stats) if t.tick_interval else inp.get
    try:
        while (batch := await next_batch()) is not None:
            stats.events_in += len(batch.messages)
            stats.batches_in += 1
            started = time.perf_counter()
            result = await (t.process(batch) if tracer is None else tracer.process(t.name, batch, t.process))
            elapsed = time.perf_counter() - started
            stats.busy_seconds += elapsed
            for h in hooks:
                h.batch_processed(stats, batch, elapsed)
            await emit(result, out, stats)
        await emit(await t.flush(), out, stats)
    finally:
        out.close()


def _ticking_get(t: Transform[Any], inp: Channel, out: Channel,
                 stats: StageStats) -> Callable[[], Awaitable[Batch | None]]:
    """`inp.get` that meanwhile calls ``t.tick()`` every ``t.tick_interval`` seconds and emits its result."""
    loop = asyncio.get_running_loop()
    interval = t.tick_interval or 0.0
    next_tick = loop.time() + interval

    async def get() -> Batch | None:
        nonlocal next_tick
        getter = asyncio.ensure_future(inp.get())
        try:
            while True:
                remaining = next_tick - loop.time()
                if remaining > 0:
                    done, _ = await asyncio.wait({getter}, timeout=remaining)
                    if done:
                        return getter.result()
                await emit(await t.tick(), out, stats)
                next_tick = loop.time() + interval
        finally:
            getter.cancel()

    return get


async def concurrent_transform_loop(t: Transform[Any], inp: Channel, out: Channel, stats: StageStats,
                                    tracer: BatchTracer | None = None) -> None:
    """Up to ``t.concurrency`` batches in `process` at once; in input order if ``t.ordered``.

    A slot is held from reading a batch until its result is emitted, so at
    most ``concurrency`` batches are in this stage whatever the order.
    """
    results: asyncio.Queue[asyncio.Future[Output] | None] = asyncio.Queue()
    slots = asyncio.Semaphore(t.concurrency)
    feeder = asyncio.create_task(_feed(t, inp, stats, slots, results, tracer))
    try:
        while (fut := await results.get()) is not None:
            await emit(await fut, out, stats)
            slots.release()
        await feeder
        await emit(await t.flush(), out, stats)
    finally:
        feeder.cancel()
        out.close()


async def _feed(t: Transform[Any], inp: Channel, stats: StageStats, slots: asyncio.Semaphore,
                results: asyncio.Queue[asyncio.Future[Output] | None], tracer: BatchTracer | None) -> None:
    """Start `process` on each batch of ``inp`` once a slot is free; queue its future, in input
    order if ``t.ordered``, else once it is done. None is queued last, after every slot is back."""
    try:
        while True:
            await slots.acquire()
            await t.capacity()
            batch = await inp.get()
            if batch is None:
                break
            stats.events_in += len(batch.messages)
            stats.batches_in += 1
            task = asyncio.ensure_future(t.process(batch) if tracer is None
                                         else tracer.process(t.name, batch, t.process))
            if t.ordered:
                results.put_nowait(task)
            else:
                task.add_done_callback(results.put_nowait)
        for _ in range(t.concurrency - 1):  # every other slot: all results emitted
            await slots.acquire()
    finally:
        results.put_nowait(None)


async def close_after(writers: Sequence[asyncio.Task[None]], channel: Channel) -> None:
    """Close ``channel`` once every task that may write to it has ended, however it ended."""
    await asyncio.gather(*writers, return_exceptions=True)
    channel.close()
