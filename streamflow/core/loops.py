"""The stage loops: how a source fills its channel and a transform turns one channel into the next.

Each loop is one supervised task of the `Runner`. They do per-batch work
only (counters, hooks, a channel operation); the per-event work belongs to
the stages themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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


async def emit(result: Output, put: Callable[[Batch], Awaitable[None]], stats: StageStats) -> None:
    """Count a stage's non-empty output batches and ``put`` each on; acknowledge the empty ones."""
    if result is None:
        return
    for b in (result,) if isinstance(result, Batch) else result:
        n = len(b.messages)
        if n:
            stats.events_out += n
            stats.batches_out += 1
            await put(b)
        else:
            b.ack()


class _Chain:
    """Transforms run one after another in one task: a stage's output goes straight into the next."""

    def __init__(self, stages: Sequence[Transform[Any]], out: Channel, stats: Sequence[StageStats],
                 hooks: Sequence[RunnerHooks], tracer: BatchTracer | None) -> None:
        self.stages = stages
        self.stats = stats
        self.hooks = hooks
        self.tracer = tracer
        #: Where each stage's output goes: the next stage, or ``out`` after the last.
        self.puts: list[Callable[[Batch], Awaitable[None]]] = [
            *(functools.partial(self.process, i) for i in range(1, len(stages))), out.put]

    async def process(self, i: int, batch: Batch) -> None:
        """``batch`` through stage ``i`` and, whatever it returns, through the stages after it."""
        t, stats, tracer = self.stages[i], self.stats[i], self.tracer
        stats.events_in += len(batch.messages)
        stats.batches_in += 1
        started = time.perf_counter()
        try:
            result = await (t.process(batch) if tracer is None else tracer.process(t.name, batch, t.process))
        except Exception as exc:
            if len(self.stages) > 1:  # the task is named after the whole chain: say which stage raised
                exc.add_note(f"raised by stage {t.name!r}")
            raise
        elapsed = time.perf_counter() - started
        stats.busy_seconds += elapsed
        for h in self.hooks:
            h.batch_processed(stats, batch, elapsed)
        await emit(result, self.puts[i], stats)

    async def flush(self) -> None:
        """Each stage's held-back output, first to last, through the stages after it."""
        for i, t in enumerate(self.stages):
            await emit(await t.flush(), self.puts[i], self.stats[i])


async def transform_loop(chain: Sequence[Transform[Any]], inp: Channel, out: Channel,
                         stats: Sequence[StageStats], hooks: Sequence[RunnerHooks],
                         tracer: BatchTracer | None = None) -> None:
    """One batch at a time through the transforms of ``chain``, in order, in this one task.

    A chain of several holds only `Transform.cpu_only` stages: while one works none could
    overlap it, so each batch goes through all of them at once, still in the CPU caches.
    The first stage's `Transform.tick` runs on its timer; at the end each stage is flushed.
    """
    run = _Chain(chain, out, stats, hooks, tracer)
    head = chain[0]
    next_batch = (_ticking_get(head, inp, functools.partial(emit, put=run.puts[0], stats=stats[0]))
                  if head.tick_interval else inp.get)
    try:
        while (batch := await next_batch()) is not None:
            await run.process(0, batch)
        await run.flush()
    finally:
        out.close()


def chains(transforms: Sequence[Transform[Any]]) -> list[list[Transform[Any]]]:
    """``transforms`` cut into the runs of `transform_loop`: consecutive `Transform.cpu_only`
    stages (one batch at a time, no timer) together, every other stage alone."""
    out: list[list[Transform[Any]]] = []
    for t in transforms:
        if out and _chainable(t) and _chainable(out[-1][-1]):
            out[-1].append(t)
        else:
            out.append([t])
    return out


def _chainable(t: Transform[Any]) -> bool:
    return t.cpu_only and t.concurrency <= 1 and not t.tick_interval


def _ticking_get(t: Transform[Any], inp: Channel,
                 emit_tick: Callable[[Output], Awaitable[None]]) -> Callable[[], Awaitable[Batch | None]]:
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
                await emit_tick(await t.tick())
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
            await emit(await fut, out.put, stats)
            slots.release()
        await feeder
        await emit(await t.flush(), out.put, stats)
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
