"""`EventTransform`: the engine loop for transforms written per event.

User code is usually per event (`map`, `filter`, `flat_map`, `enrich`); this
base class loops over the batch, applies the stage's error policy to events
that raise, and runs async functions with up to ``concurrency`` events in
flight, keeping their order.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from abc import abstractmethod
from collections import deque
from typing import Any, TypeVar

from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.stage import EventTransformConfig, StageContext, Transform

_FAILED = object()

EC = TypeVar("EC", bound=EventTransformConfig)


class EventTransform(Transform[EC]):
    """Base for transforms defined by a per-event `call` and how its result is `emit`-ted.

    Subclasses implement `call(msg)` (sync or async: set ``is_async``) and
    `emit(msg, result, out)`; they may override `fast` with a vectorised path
    for the common case where nothing raises.
    """

    #: Whether `call` returns an awaitable (set by `setup` where it depends on the config).
    is_async: bool = False

    def __init__(self, config: EC | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.errors = ErrorHandler(self.name, self.config.on_error)
        self._launcher: _Launcher | None = None

    def serial_reason(self) -> str | None:
        if self.is_async:
            return None  # up to `concurrency` events (and batches) in flight
        return "its work is synchronous, so it runs one event at a time on the event loop"

    @property
    def cpu_only(self) -> bool:
        return not self.is_async

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.errors.policy)
        self._launcher = _Launcher(self.concurrency)

    # -- to implement -----------------------------------------------------
    @abstractmethod
    def call(self, msg: Message) -> Any:
        """The per-event work; may return an awaitable when ``is_async``."""

    @abstractmethod
    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        """Append what ``msg`` becomes, given ``result``, to ``out``."""

    def fast(self, batch: Batch) -> Batch | None:
        """Whole-batch path for sync calls; raise to fall back to the per-event path."""
        out: list[Message] = []
        emit, call = self.emit, self.call
        for m in batch.messages:
            emit(m, call(m), out)
        return batch.derive(out)

    # -- engine ------------------------------------------------------------
    async def capacity(self) -> None:
        """With per-event concurrency: wait while ``concurrency`` events already wait for a slot."""
        if self._launcher is not None:
            await self._launcher.room()

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        if not self.is_async:
            try:
                result = self.fast(batch)
            except Exception:  # noqa: BLE001 - fall back to per-event handling
                return await self._per_event(batch)
            self._count_filtered(batch, result)
            return result
        if self.concurrency <= 1 or len(batch.messages) == 1:
            return await self._per_event(batch)
        return await self._concurrent(batch)

    def _count_filtered(self, batch: Batch, result: Batch | None, failed: int = 0) -> None:
        """Count the events dropped on purpose: those missing from ``result`` that did not fail
        (failed ones were counted by their error policy)."""
        dropped = len(batch.messages) - failed - (len(result.messages) if result is not None else 0)
        if self.ctx is not None and result is not None and dropped > 0:
            self.ctx.stats.filtered += dropped

    async def _call_one(self, msg: Message, batch: Batch) -> Any:
        try:
            result = self.call(msg)
            if self.is_async:
                result = await result
            return result
        except Exception as exc:  # noqa: BLE001 - user code may raise anything
            handled = await self.errors.handle(msg, exc, lambda: self.call(msg), batch)
            return handled.value if handled.recovered else _FAILED

    async def _per_event(self, batch: Batch) -> Batch:
        out: list[Message] = []
        failed = 0
        for m in batch.messages:
            result = await self._call_one(m, batch)
            if result is _FAILED:
                failed += 1
            else:
                self.emit(m, result, out)
        result_batch = batch.derive(out)
        self._count_filtered(batch, result_batch, failed)
        return result_batch

    async def _concurrent(self, batch: Batch) -> Batch:
        """Up to ``concurrency`` calls in flight (shared by every batch of the stage), results in order.

        The batch's events join the stage's `_Launcher` queue; each finished
        call starts the next queued one from its completion callback, so no
        coroutine waits per queued event. Events that raise go to the error
        policy once the batch's other calls are done.
        """
        launcher = self._launcher
        assert launcher is not None
        run = _BatchCalls(self.call, batch.messages)
        launcher.submit(run)
        try:
            if run.left:
                await run.finished
        finally:
            run.cancel()  # cancelled or aborted: drop what is queued, stop what is in flight
        msgs, results = run.msgs, run.results
        if run.failed:
            call = self.call
            for i, exc in sorted(run.failed, key=lambda f: f[0]):
                if not isinstance(exc, Exception):
                    raise exc
                m = msgs[i]
                handled = await self.errors.handle(m, exc, functools.partial(call, m), batch)
                results[i] = handled.value if handled.recovered else _FAILED
        out: list[Message] = []
        emit = self.emit
        for m, result in zip(msgs, results, strict=True):
            if result is not _FAILED:
                emit(m, result, out)
        result_batch = batch.derive(out)
        self._count_filtered(batch, result_batch, sum(r is _FAILED for r in results))
        return result_batch


class _BatchCalls:
    """The per-event calls of one batch: results in input order, failures, completion."""

    __slots__ = ("call", "msgs", "results", "failed", "left", "next", "finished", "tasks", "cancelled",
                 "context")

    def __init__(self, call: Any, msgs: list[Message]) -> None:
        self.call = call
        self.msgs = msgs
        #: The context the calls run in: the batch's (its trace span), whichever batch's callback starts them.
        self.context = contextvars.copy_context()
        self.results: list[Any] = [_FAILED] * len(msgs)
        self.failed: list[tuple[int, BaseException]] = []
        self.left = len(msgs)
        self.next = 0  # index of the next event to start
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.cancelled = False

    def settle(self, i: int, result: Any = _FAILED, exc: BaseException | None = None) -> None:
        if exc is None:
            self.results[i] = result
        else:
            self.failed.append((i, exc))
        self.left -= 1
        if not self.left and not self.finished.done():
            self.finished.set_result(None)

    def cancel(self) -> None:
        if self.left:
            self.cancelled = True
            for task in list(self.tasks):
                task.cancel()


class _Launcher:
    """Keeps up to ``limit`` event calls running for a stage, starting queued ones FIFO across batches."""

    __slots__ = ("limit", "running", "queue", "loop", "backlog", "_room")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.queue: deque[_BatchCalls] = deque()
        self.loop = asyncio.get_running_loop()
        self.backlog = 0  # queued events not started yet
        self._room: asyncio.Future[None] | None = None

    async def room(self) -> None:
        """Wait while at least ``limit`` events wait for a slot (more read-ahead would only queue)."""
        while self.backlog >= self.limit:
            if self._room is None or self._room.done():
                self._room = self.loop.create_future()
            await self._room

    def submit(self, run: _BatchCalls) -> None:
        if run.left:
            self.queue.append(run)
            self.backlog += len(run.msgs)
            self.pump()

    def pump(self) -> None:
        """Start queued calls while a slot is free."""
        queue, create_task = self.queue, self.loop.create_task
        while self.running < self.limit and queue:
            run = queue[0]
            if run.cancelled:
                queue.popleft()
                self.backlog -= len(run.msgs) - run.next
                continue
            i = run.next
            run.next += 1
            self.backlog -= 1
            if run.next >= len(run.msgs):
                queue.popleft()
            try:
                coro = run.call(run.msgs[i])
                task = (create_task(coro, context=run.context) if asyncio.iscoroutine(coro)
                        else asyncio.ensure_future(coro))
            except Exception as exc:  # noqa: BLE001 - raised before returning its awaitable
                run.settle(i, exc=exc)
                continue
            self.running += 1
            run.tasks.add(task)
            task.add_done_callback(functools.partial(self._done, run, i))
        if self.backlog < self.limit and self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _done(self, run: _BatchCalls, i: int, task: asyncio.Task[Any]) -> None:
        self.running -= 1
        run.tasks.discard(task)
        if task.cancelled():
            if not run.cancelled:
                run.settle(i, exc=asyncio.CancelledError())
        elif (exc := task.exception()) is not None:
            run.settle(i, exc=exc)
        else:
            run.settle(i, task.result())
        self.pump()


def is_async_callable(fn: Any) -> bool:
    """True for coroutine functions (and callables whose __call__ is one)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
