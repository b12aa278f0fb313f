"""`Runner`: runs a `Pipeline` as supervised tasks joined by bounded channels.

It owns the event loop policy (uvloop when installed), signals, graceful
shutdown (contract 4), periodic commits (contract 2) and the error policy of
crashed stages: a stage that raises outside its per-event error policy fails
the pipeline cleanly — it never stalls silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .batch import Batch
from .channel import Channel
from .errors import PipelineFailed
from .pipeline import Pipeline, SinkRoute
from .stage import Component, Sink, Source, StageContext, Transform
from .stats import StageStats
from .tuning import gc_tuned, tune_allocator

log = logging.getLogger("streamflow.runner")

#: Exit codes of `streamflow run`.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_ABORTED = 0, 1, 2, 130

Watcher = Callable[["Runner"], Awaitable[None]]


class RunnerHooks:
    """Observer of the hot path (metrics); called once per batch, never per event."""

    def batch_processed(self, stats: StageStats, batch: Batch, seconds: float) -> None:
        """A transform finished `process` on ``batch`` after ``seconds``."""

    def batch_written(self, stats: StageStats, batch: Batch, seconds: float) -> None:
        """A sink durably wrote ``batch`` after ``seconds``."""


@dataclass
class RunResult:
    """How a run ended and what it did."""

    exit_code: int
    reason: str
    elapsed: float
    stats: list[StageStats] = field(default_factory=list)
    error: BaseException | None = None

    def _total(self, kind: str, attr: str) -> int:
        return sum(getattr(s, attr) for s in self.stats if s.kind == kind)

    @property
    def events_in(self) -> int:
        """Events the sources produced."""
        return self._total("source", "events_out")

    @property
    def events_out(self) -> int:
        """Events the (non dead-letter) sinks wrote."""
        return self._total("sink", "events_out")

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.stats)

    @property
    def dead_lettered(self) -> int:
        return sum(s.dead_lettered for s in self.stats)

    def summary(self) -> str:
        rate = self.events_in / self.elapsed if self.elapsed > 0 else 0.0
        return (f"{self.reason}: {self.events_in} in, {self.events_out} out, {self.errors} errors, "
                f"{self.dead_lettered} dead-lettered in {self.elapsed:.2f}s ({rate:,.0f} events/s)")


class Runner:
    """Runs one pipeline. Use `run` inside an event loop, or `run_pipeline` from sync code."""

    def __init__(self, pipeline: Pipeline, *, handle_signals: bool = True,
                 watchers: Iterable[Watcher] = (), hooks: Iterable[RunnerHooks] = ()) -> None:
        self.pipeline = pipeline.validate()
        self.hooks = list(hooks)
        self.settings = pipeline.settings
        self.handle_signals = handle_signals
        self.watchers = list(watchers)
        self.state = "created"  # -> starting -> running -> draining -> stopped
        self.started_at = 0.0
        self.stats: dict[str, StageStats] = {}
        self.channels: list[Channel] = []
        self._stopping: asyncio.Event | None = None
        self._abort: asyncio.Event | None = None
        self._reason: str | None = None
        self._failure: BaseException | None = None
        self._signals = 0
        cap = self.settings.channel

        def channel(name: str) -> Channel:
            ch = Channel(name, cap.max_batches, cap.max_events)
            self.channels.append(ch)
            return ch

        p = self.pipeline
        names = [t.name for t in p.transforms]
        self._links: list[Channel] = [channel(f"{a}->{b}") for a, b in
                                      zip(["sources", *names], [*names, "sinks"], strict=False)]
        self._sink_channels = [channel(f"->{r.sink.name}") for r in p.sinks]
        self._dlq_channel = channel(f"->{p.dead_letter_sink.name}") if p.dead_letter_sink else None

    # -- control ----------------------------------------------------------
    def stop(self) -> None:
        """Graceful shutdown: stop reading, drain, flush, commit (contract 4)."""
        if self._stopping is None or self._stopping.is_set():
            return
        log.info("stopping: draining the pipeline (shutdown_timeout %.1fs)", self.settings.shutdown_timeout)
        self.state = "draining"
        self._stopping.set()
        asyncio.get_running_loop().call_later(self.settings.shutdown_timeout, self._drain_timed_out)

    def abort(self, reason: str = "aborted") -> None:
        """Stop at once: cancel every stage, commit only what is acknowledged."""
        if self._abort is not None and not self._abort.is_set():
            self._reason = self._reason or reason
            self._abort.set()

    def _drain_timed_out(self) -> None:
        if self.state == "draining":
            log.error("drain did not finish within shutdown_timeout %.1fs; aborting",
                      self.settings.shutdown_timeout)
            self.abort("drain timed out")

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("received %s", name)
            self.stop()
        else:
            log.warning("received %s again: aborting", name)
            self.abort(f"aborted by second {name}")

    @property
    def ready(self) -> bool:
        """Running, not draining, and every source and sink connected."""
        return self.state == "running" and all(c.ready for c in self.pipeline.stages())

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    # -- running ----------------------------------------------------------
    async def run(self) -> RunResult:
        """Open every stage, run until the sources end or a stop/failure, then close."""
        tune_allocator()  # batch-sized alloc/free cycles must not trim and regrow the heap each time
        with gc_tuned():
            return await self._run()

    async def _run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        self._stopping, self._abort = asyncio.Event(), asyncio.Event()
        self.state = "starting"
        self.started_at = time.monotonic()
        installed: list[int] = []
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    installed.append(sig)
        opened: list[Component] = []
        watchers = [asyncio.create_task(w(self), name=f"watcher-{i}") for i, w in enumerate(self.watchers)]
        try:
            await self._open(opened)
            if not self._abort.is_set():
                self.state = "running" if not self.stopping else "draining"
                await self._supervise()
        except Exception as exc:  # noqa: BLE001 - opening a stage failed
            log.error("pipeline %s failed to start: %s", self.pipeline.name, exc)
            self._failure = self._failure or exc
        finally:
            self.state = "stopped"
            await self._commit_all(final=True)
            for comp in reversed(opened):
                try:
                    await comp.close()
                except Exception as exc:  # noqa: BLE001
                    log.warning("closing %s failed: %s", comp.name, exc)
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            for sig in installed:
                loop.remove_signal_handler(sig)
        return self._result()

    def _result(self) -> RunResult:
        elapsed = time.monotonic() - self.started_at
        stats = [self.stats[c.name] for c in self.pipeline.stages() if c.name in self.stats]
        if self._failure is not None:
            reason = self._reason or f"failed: {self._failure}"
            return RunResult(EXIT_FAILED, reason, elapsed, stats, self._failure)
        if self._reason is not None:
            code = EXIT_FAILED if self._reason == "drain timed out" else EXIT_ABORTED
            return RunResult(code, self._reason, elapsed, stats)
        return RunResult(EXIT_OK, "stopped" if self.stopping else "completed", elapsed, stats)

    def _ctx(self, comp: Component) -> StageContext:
        stats = self.stats[comp.name] = StageStats(comp.name, comp.kind)
        if comp is self.pipeline.dead_letter_sink:
            stats.kind = "dead_letter"
        dlq = self._dead_letter if self._dlq_channel is not None else None
        return StageContext(self.pipeline.name, comp.name, stats, dlq, self.settings)

    async def _open(self, opened: list[Component]) -> None:
        p = self.pipeline
        order: list[Component] = [r.sink for r in p.sinks]
        if p.dead_letter_sink is not None:
            order.append(p.dead_letter_sink)
        order += [*p.transforms, *p.sources]
        for comp in order:
            await comp.open(self._ctx(comp))
            opened.append(comp)

    async def _supervise(self) -> None:
        p = self.pipeline
        assert self._abort is not None
        tasks: list[asyncio.Task[None]] = []
        sources_left = [len(p.sources)]
        for src in p.sources:
            tasks.append(asyncio.create_task(self._source_loop(src, self._links[0], sources_left),
                                             name=f"source:{src.name}"))
        for i, t in enumerate(p.transforms):
            loop_fn = self._transform_loop if t.concurrency <= 1 else self._transform_concurrent
            tasks.append(asyncio.create_task(loop_fn(t, self._links[i], self._links[i + 1]),
                                             name=f"transform:{t.name}"))
        tasks.append(asyncio.create_task(self._route_loop(self._links[-1]), name="route"))
        sink_tasks = [asyncio.create_task(self._sink_loop(r.sink, ch), name=f"sink:{r.sink.name}")
                      for r, ch in zip(p.sinks, self._sink_channels, strict=False)]
        tasks += sink_tasks
        if p.dead_letter_sink is not None and self._dlq_channel is not None:
            dlq = self._dlq_channel
            tasks.append(asyncio.create_task(self._dlq_close_after(tasks[:], dlq), name="dlq-closer"))
            tasks.append(asyncio.create_task(self._sink_loop(p.dead_letter_sink, dlq),
                                             name=f"sink:{p.dead_letter_sink.name}"))
        committer = asyncio.create_task(self._commit_loop(), name="committer")
        abort_wait = asyncio.create_task(self._abort.wait())
        pending = set(tasks)
        try:
            while pending:
                done, _ = await asyncio.wait(pending | {abort_wait}, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t is abort_wait:
                        continue
                    pending.discard(t)
                    exc = None if t.cancelled() else t.exception()
                    if exc is not None:
                        self._fail(t.get_name(), exc)
                if self._abort.is_set():
                    break
        finally:
            for t in [*pending, committer, abort_wait]:
                t.cancel()
            await asyncio.gather(*pending, committer, abort_wait, return_exceptions=True)
            if self._abort.is_set():
                for ch in self.channels:
                    ch.drain()

    def _fail(self, task_name: str, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            if isinstance(exc, PipelineFailed):
                log.error("pipeline %s failed: %s", self.pipeline.name, exc)
            else:
                log.error("stage %s crashed: %s: %s", task_name, type(exc).__name__, exc, exc_info=exc)
        self.abort(f"failed: {exc}")

    async def _dead_letter(self, batch: Batch) -> None:
        assert self._dlq_channel is not None
        await self._dlq_channel.put(batch)

    @staticmethod
    async def _dlq_close_after(tasks: list[asyncio.Task[None]], dlq: Channel) -> None:
        # Anything upstream may dead-letter; close the dead-letter channel after all of it ends.
        await asyncio.gather(*tasks, return_exceptions=True)
        dlq.close()

    # -- stage loops ------------------------------------------------------
    async def _source_loop(self, src: Source, out: Channel, left: list[int]) -> None:
        stats = self.stats[src.name]
        assert self._stopping is not None
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                read = asyncio.ensure_future(src.read())
                done, _ = await asyncio.wait({read, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if read not in done:
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        batch = await read
                        if batch is not None:  # it finished while being cancelled: keep it
                            await self._put_source_batch(batch, out, stats)
                    break
                batch = read.result()
                if batch is None:
                    break
                await self._put_source_batch(batch, out, stats)
        finally:
            stop_wait.cancel()
            left[0] -= 1
            if left[0] == 0:
                out.close()

    @staticmethod
    async def _put_source_batch(batch: Batch, out: Channel, stats: StageStats) -> None:
        n = len(batch.messages)
        if not n:
            batch.ack()
            return
        if not batch.created:
            batch.created = time.monotonic()
        stats.events_out += n
        stats.batches_out += 1
        await out.put(batch)

    @staticmethod
    async def _emit(result: Batch | list[Batch] | None, out: Channel, stats: StageStats) -> None:
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

    async def _transform_loop(self, t: Transform, inp: Channel, out: Channel) -> None:
        stats = self.stats[t.name]
        next_batch = self._ticking_get(t, inp, out, stats) if t.tick_interval else inp.get
        try:
            while (batch := await next_batch()) is not None:
                stats.events_in += len(batch.messages)
                stats.batches_in += 1
                started = time.perf_counter()
                result = await t.process(batch)
                elapsed = time.perf_counter() - started
                stats.busy_seconds += elapsed
                for h in self.hooks:
                    h.batch_processed(stats, batch, elapsed)
                await self._emit(result, out, stats)
            await self._emit(await t.flush(), out, stats)
        finally:
            out.close()

    def _ticking_get(self, t: Transform, inp: Channel, out: Channel,
                     stats: StageStats) -> Callable[[], Awaitable[Batch | None]]:
        """`inp.get` that meanwhile calls ``t.tick()`` every ``t.tick_interval`` seconds and emits its result."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + (t.tick_interval or 0.0)

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
                    await self._emit(await t.tick(), out, stats)
                    next_tick = loop.time() + (t.tick_interval or 0.0)
            finally:
                getter.cancel()

        return get

    async def _transform_concurrent(self, t: Transform, inp: Channel, out: Channel) -> None:
        """Up to ``t.concurrency`` batches in `process` at once; in input order if ``t.ordered``.

        A slot is held from reading a batch until its result is emitted, so at
        most ``concurrency`` batches are in this stage whatever the order.
        """
        stats = self.stats[t.name]
        results: asyncio.Queue[asyncio.Future[Any] | None] = asyncio.Queue()
        slots = asyncio.Semaphore(t.concurrency)

        async def feed() -> None:
            try:
                while True:
                    await slots.acquire()
                    await t.capacity()
                    batch = await inp.get()
                    if batch is None:
                        break
                    stats.events_in += len(batch.messages)
                    stats.batches_in += 1
                    task = asyncio.ensure_future(t.process(batch))
                    if t.ordered:
                        results.put_nowait(task)
                    else:
                        task.add_done_callback(results.put_nowait)
                for _ in range(t.concurrency - 1):  # every other slot: all results emitted
                    await slots.acquire()
            finally:
                results.put_nowait(None)

        feeder = asyncio.create_task(feed())
        try:
            while (fut := await results.get()) is not None:
                await self._emit(await fut, out, stats)
                slots.release()
            await feeder
            await self._emit(await t.flush(), out, stats)
        finally:
            feeder.cancel()
            out.close()

    async def _route_loop(self, inp: Channel) -> None:
        """Fan out each batch to every sink whose ``when`` selects its events."""
        routes: list[SinkRoute] = self.pipeline.sinks
        channels = self._sink_channels
        single = len(routes) == 1 and routes[0].when is None
        try:
            while (batch := await inp.get()) is not None:
                if single:
                    await channels[0].put(batch)
                    continue
                targets: list[tuple[Channel, Batch]] = []
                for route, ch in zip(routes, channels, strict=False):
                    if route.when is None:
                        targets.append((ch, batch))
                    else:
                        when = route.when
                        chosen = [m for m in batch.messages if when(m.value)]
                        if chosen:
                            targets.append((ch, batch.derive(chosen)))
                if not targets:
                    batch.ack()
                    continue
                batch.retain(len(targets) - 1)
                for ch, b in targets:
                    await ch.put(b)
        finally:
            for ch in channels:
                ch.close()

    async def _sink_loop(self, sink: Sink, inp: Channel) -> None:
        stats = self.stats[sink.name]
        while (batch := await inp.get()) is not None:
            n = len(batch.messages)
            stats.events_in += n
            stats.batches_in += 1
            started = time.perf_counter()
            await self._retrying(sink, "write", lambda: sink.write(batch))
            elapsed = time.perf_counter() - started
            stats.busy_seconds += elapsed
            for h in self.hooks:
                h.batch_written(stats, batch, elapsed)
            if not sink.acks_itself:
                batch.ack()
            stats.events_out += n
            stats.batches_out += 1
        await self._retrying(sink, "flush", sink.flush)

    async def _retrying(self, sink: Sink, what: str, call: Callable[[], Awaitable[None]]) -> None:
        """Retry a sink operation with exponential backoff and jitter; never drop the batch."""
        policy = self.settings.sink_retry
        attempt = 0
        while True:
            try:
                await call()
                if attempt:
                    log.info("sink %s recovered after %d retries", sink.name, attempt)
                return
            except PipelineFailed:
                raise  # the sink says retrying cannot help (e.g. its reader went away)
            except Exception as exc:  # noqa: BLE001 - any other sink failure is retried
                attempt += 1
                self.stats[sink.name].retries += 1
                if policy.max_attempts is not None and attempt >= policy.max_attempts:
                    raise PipelineFailed(f"sink {sink.name!r} {what} failed {attempt} times: "
                                         f"{type(exc).__name__}: {exc}") from exc
                cap = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
                delay = random.uniform(cap / 2, cap)
                log.warning("sink %s %s failed (%s: %s); retry %d in %.2fs", sink.name, what,
                            type(exc).__name__, exc, attempt, delay)
                await asyncio.sleep(delay)

    # -- commits ----------------------------------------------------------
    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_interval)
            await self._commit_all()

    async def _commit_all(self, final: bool = False) -> None:
        for src in self.pipeline.sources:
            try:
                await src.commit()
            except Exception as exc:  # noqa: BLE001 - a failed commit is retried next time
                log.warning("commit of %s failed%s: %s", src.name, " (final)" if final else "", exc)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_pipeline(pipeline: Pipeline, *, handle_signals: bool = True,
                 watchers: Iterable[Watcher] = (), hooks: Iterable[RunnerHooks] = ()) -> RunResult:
    """Run ``pipeline`` on a fresh (uv)loop until it ends; returns the `RunResult`."""
    runner = Runner(pipeline, handle_signals=handle_signals, watchers=watchers, hooks=hooks)
    with asyncio.Runner(loop_factory=new_event_loop) as loop_runner:
        return loop_runner.run(runner.run())
