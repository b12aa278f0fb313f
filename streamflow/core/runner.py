"""`Runner`: runs a `Pipeline` as supervised tasks joined by bounded channels.

The runner owns the lifecycle of a run: it wires the channels, opens the
stages, starts one task per stage (or chain of stages) and supervises them, shuts down gracefully
(contract 4) and fails the pipeline cleanly when a stage raises outside its
per-event error policy — it never stalls silently. The work inside the tasks
belongs to small collaborators it composes:

* `loops` — the source and transform loops, and the chains of transforms that share a task;
* `routing.Router` — fan-out to the sinks by predicate (none for one sink that takes everything);
* `delivery.Delivery` — sink writes, acks, and retry of an outage;
* `commits.Committer` — periodic and final checkpoints (contract 2);
* `signals.ShutdownSignals` — SIGTERM/SIGINT;
* `tuning` — the event loop (uvloop), the allocator and the GC during a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from ..security.secrets import protect
from .channel import Channel
from .commits import Committer
from .delivery import Delivery
from .errors import PipelineFailed
from .log_throttle import LogThrottle
from .loops import chains, close_after, concurrent_transform_loop, source_loop, transform_loop
from .pipeline import Pipeline
from .result import EXIT_ABORTED, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, RunnerHooks, RunResult
from .routing import Router
from .signals import ShutdownSignals
from .stage import Component, Sink, StageContext, Transform
from .stall import StallDetector
from .stats import StageStats
from .tracing import BatchTracer, tracer_for
from .tuning import gc_tuned, new_event_loop, tune_allocator

__all__ = [
    "EXIT_ABORTED", "EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "RunResult", "Runner", "RunnerHooks",
    "Watcher", "new_event_loop", "run_pipeline",
]

log = logging.getLogger("streamflow.runner")

#: A task that runs beside the pipeline for as long as it runs (ops server, progress display).
Watcher = Callable[["Runner"], Coroutine[Any, Any, None]]
#: The reason a run ends with when the drain outlasts ``shutdown_timeout``.
DRAIN_TIMED_OUT = "drain timed out"


class Runner:
    """Runs one pipeline. Use `run` inside an event loop, or `run_pipeline` from sync code."""

    def __init__(self, pipeline: Pipeline, *, handle_signals: bool = True,
                 watchers: Iterable[Watcher] = (), hooks: Iterable[RunnerHooks] = (),
                 tracer: BatchTracer | None = None) -> None:
        self.pipeline = pipeline.validate()
        #: Hot-path observers; the loops read this very list, so a hook added before the run counts.
        self.hooks = list(hooks)
        self.settings = pipeline.settings
        #: Spans of every batch at every stage (None: ``settings.tracing`` decides when the run starts).
        self.tracer = tracer
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
        self._committer = Committer(pipeline.sources, self.settings.commit_interval)
        #: The transforms as their tasks run them: consecutive `Transform.cpu_only` stages in one.
        self._chains = chains(pipeline.transforms)
        writers = ["sources", *(c[-1].name for c in self._chains)]
        readers = [*(c[0].name for c in self._chains), "sinks"]
        #: sources -> chain 1 -> … -> router; straight into the sink's channel when the router has
        #: nothing to choose (one sink, no ``when``).
        self._links = [self._channel(f"{a}->{b}") for a, b in zip(writers[:-1], readers[:-1], strict=True)]
        direct = self._routes_directly(pipeline)
        if not direct:
            self._links.append(self._channel(f"{writers[-1]}->sinks"))
        self._sink_channels = [self._channel(f"->{r.sink.name}") for r in pipeline.sinks]
        if direct:
            self._links.append(self._sink_channels[0])
        dlq = pipeline.dead_letter_sink
        self._dlq_channel = self._channel(f"->{dlq.name}") if dlq is not None else None
        timeout = self.settings.stall_timeout
        #: Notices a run that makes no progress while events wait (None: stall_timeout is null).
        self.stall = StallDetector(timeout) if timeout is not None else None
        self._deliveries: list[Delivery] = []

    @staticmethod
    def _routes_directly(pipeline: Pipeline) -> bool:
        """One sink, every event to it: the last stage writes into its channel, no router between."""
        return (len(pipeline.sinks) == 1 and pipeline.sinks[0].when is None
                and not pipeline.side_output_sinks())

    def _channel(self, name: str) -> Channel:
        cap = self.settings.channel
        ch = Channel(name, cap.max_batches, cap.max_events, cap.max_bytes)
        self.channels.append(ch)
        return ch

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
            self.abort(DRAIN_TIMED_OUT)

    @property
    def ready(self) -> bool:
        """Running, not draining, not stalled, and every source and sink connected."""
        return (self.state == "running" and not self.stalled
                and all(c.ready for c in self.pipeline.stages()))

    @property
    def stalled(self) -> bool:
        """Running or draining, with no progress for ``stall_timeout`` while events wait (`StallDetector`)."""
        return self.stall is not None and self.stall.stalled and self.state in ("running", "draining")

    @property
    def healthy(self) -> bool:
        """False only while stalled with ``stall_unhealthy`` set (drives /healthz)."""
        return not (self.stalled and self.settings.stall_unhealthy)

    @property
    def stopping(self) -> bool:
        """True once a graceful stop was asked for."""
        return self._stopping is not None and self._stopping.is_set()

    # -- lifecycle --------------------------------------------------------
    async def run(self) -> RunResult:
        """Open every stage, run until the sources end or a stop/failure, then close."""
        tune_allocator()  # batch-sized alloc/free cycles must not trim and regrow the heap each time
        protect(self.pipeline.stages())  # secret-typed config values are masked in logs and dead letters
        with gc_tuned():
            return await self._run()

    async def _run(self) -> RunResult:
        self._stopping, self._abort = asyncio.Event(), asyncio.Event()
        self.state = "starting"
        self.started_at = time.monotonic()
        with self._signals():
            opened: list[Component[Any]] = []
            watchers = [asyncio.create_task(w(self), name=f"watcher-{i}") for i, w in enumerate(self.watchers)]
            try:
                if self.tracer is None:
                    self.tracer = tracer_for(self.settings.tracing, self.pipeline.name)
                await self._open(opened)
                if not self._abort.is_set():
                    self.state = "running" if not self.stopping else "draining"
                    await self._supervise()
            except Exception as exc:  # noqa: BLE001 - opening a stage failed
                log.error("pipeline %s failed to start: %s", self.pipeline.name, exc)
                self._failure = self._failure or exc
            finally:
                self.state = "stopped"
                LogThrottle.flush_all()
                await self._committer.commit_all(final=True)
                await self._close(opened)
                if self.tracer is not None:
                    await self.tracer.close()
                for w in watchers:
                    w.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
        return self._result()

    def _signals(self) -> contextlib.AbstractContextManager[None]:
        if not self.handle_signals:
            return contextlib.nullcontext()
        return ShutdownSignals(self.stop, self.abort).installed(asyncio.get_running_loop())

    def _result(self) -> RunResult:
        elapsed = time.monotonic() - self.started_at
        stats = [self.stats[c.name] for c in self.pipeline.stages() if c.name in self.stats]
        if self._failure is not None:
            reason = self._reason or f"failed: {self._failure}"
            return RunResult(EXIT_FAILED, reason, elapsed, stats, self._failure)
        if self._reason is not None:
            code = EXIT_FAILED if self._reason == DRAIN_TIMED_OUT else EXIT_ABORTED
            return RunResult(code, self._reason, elapsed, stats)
        return RunResult(EXIT_OK, "stopped" if self.stopping else "completed", elapsed, stats)

    def _ctx(self, comp: Component[Any]) -> StageContext:
        stats = self.stats[comp.name] = StageStats(comp.name, comp.kind)
        if comp is self.pipeline.dead_letter_sink:
            stats.kind = "dead_letter"
        dlq = self._dlq_channel.put if self._dlq_channel is not None else None
        task_name = f"{comp.kind}:{comp.name}"
        outputs = {name: self._sink_channels[i].put for i, r in enumerate(self.pipeline.sinks)
                   if (name := r.sink.name) in comp.side_outputs()} if isinstance(comp, Transform) else {}
        return StageContext(self.pipeline.name, comp.name, stats, dlq, self.settings,
                            on_failure=lambda exc: self._fail(task_name, exc), outputs=outputs)

    async def _open(self, opened: list[Component[Any]]) -> None:
        """Open the stages downstream first, so nothing is read before it can be written."""
        p = self.pipeline
        order: list[Component[Any]] = [r.sink for r in p.sinks]
        if p.dead_letter_sink is not None:
            order.append(p.dead_letter_sink)
        order += [*p.transforms, *p.sources]
        for t in p.transforms:  # before a source opens: the first assignment must reach the stage
            listener = t.partition_listener()
            if listener is not None and (t.needs_partitioned_input or p.partitioned_input()):
                for s in p.sources:
                    s.add_partition_listener(listener)
        for comp in order:
            await comp.open(self._ctx(comp))
            opened.append(comp)

    @staticmethod
    async def _close(opened: list[Component[Any]]) -> None:
        for comp in reversed(opened):
            try:
                await comp.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing %s failed: %s", comp.name, exc)

    # -- supervision ------------------------------------------------------
    async def _supervise(self) -> None:
        """Run the stage tasks until all end or the run aborts; the first crash aborts it."""
        assert self._abort is not None
        stages = self._start_stages()
        committer = asyncio.create_task(self._committer.run(), name="committer")
        abort_wait = asyncio.create_task(self._abort.wait())
        helpers: list[asyncio.Task[Any]] = [committer, abort_wait]
        if self.stall is not None:
            helpers.append(asyncio.create_task(self.stall.watch(
                lambda: list(self.stats.values()), self.channels,
                lambda: [d.sink.name for d in self._deliveries if d.writing]), name="stall-detector"))
        pending = set(stages)
        try:
            while pending and not self._abort.is_set():
                done, _ = await asyncio.wait(pending | {abort_wait}, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {abort_wait}:
                    pending.discard(task)
                    exc = None if task.cancelled() else task.exception()
                    if exc is not None:
                        self._fail(task.get_name(), exc)
        finally:
            for task in [*pending, *helpers]:
                task.cancel()
            await asyncio.gather(*pending, *helpers, return_exceptions=True)
            if self._abort.is_set():
                for ch in self.channels:
                    ch.drain()

    def _start_stages(self) -> list[asyncio.Task[None]]:
        """One task per stage, plus the tasks closing the channels with several writers."""
        p, first = self.pipeline, self._links[0]
        assert self._stopping is not None
        sources = [_task(source_loop(s, first, self.stats[s.name], self._stopping, self.tracer),
                         f"source:{s.name}") for s in p.sources]
        tasks = [*sources, _task(close_after(sources, first), "sources-closer")]
        tasks += [_task(self._transform_loop(i, chain), "transform:" + "+".join(t.name for t in chain))
                  for i, chain in enumerate(self._chains)]
        side = p.side_output_sinks()  # fed by their stages: closed once every stage ended
        routed = [(r, ch) for r, ch in zip(p.sinks, self._sink_channels, strict=True) if r.sink.name not in side]
        tasks += [_task(close_after(tasks[:], ch), f"closer:{r.sink.name}")
                  for r, ch in zip(p.sinks, self._sink_channels, strict=True) if r.sink.name in side]
        if not self._routes_directly(p):
            tasks.append(_task(Router([r for r, _ in routed], [ch for _, ch in routed]).run(self._links[-1]),
                               "route"))
        tasks += [_task(self._delivery(r.sink).run(ch), f"sink:{r.sink.name}")
                  for r, ch in zip(p.sinks, self._sink_channels, strict=True)]
        if p.dead_letter_sink is not None and self._dlq_channel is not None:
            # Anything upstream may dead-letter; close the dead-letter channel after all of it ends.
            tasks.append(_task(close_after(tasks[:], self._dlq_channel), "dlq-closer"))
            tasks.append(_task(self._delivery(p.dead_letter_sink).run(self._dlq_channel),
                               f"sink:{p.dead_letter_sink.name}"))
        return tasks

    def _transform_loop(self, i: int, chain: list[Transform[Any]]) -> Coroutine[Any, Any, None]:
        inp, out, t = self._links[i], self._links[i + 1], chain[0]
        if t.concurrency <= 1:
            return transform_loop(chain, inp, out, [self.stats[s.name] for s in chain], self.hooks, self.tracer)
        return concurrent_transform_loop(t, inp, out, self.stats[t.name], self.tracer)

    def _delivery(self, sink: Sink[Any]) -> Delivery:
        delivery = Delivery(sink, self.stats[sink.name], self.hooks, self.settings.sink_retry, self.tracer)
        self._deliveries.append(delivery)
        return delivery

    def _fail(self, task_name: str, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            if isinstance(exc, PipelineFailed):
                log.error("pipeline %s failed: %s", self.pipeline.name, exc, extra=exc.where)
            else:
                log.error("stage %s crashed: %s: %s", task_name, type(exc).__name__, exc, exc_info=exc)
        self.abort(f"failed: {exc}")


def _task(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coro, name=name)


def run_pipeline(pipeline: Pipeline, *, handle_signals: bool = True, watchers: Iterable[Watcher] = (),
                 hooks: Iterable[RunnerHooks] = (), tracer: BatchTracer | None = None) -> RunResult:
    """Run ``pipeline`` on a fresh (uv)loop until it ends; returns the `RunResult`."""
    runner = Runner(pipeline, handle_signals=handle_signals, watchers=watchers, hooks=hooks, tracer=tracer)
    with asyncio.Runner(loop_factory=new_event_loop) as loop_runner:
        return loop_runner.run(runner.run())

