"""`EventTransform`: the engine loop for transforms written per event.

User code is usually per event (`map`, `filter`, `flat_map`, `enrich`); this
base class loops over the batch, applies the stage's error policy to events
that raise, and runs async functions with up to ``concurrency`` events in
flight, keeping their order.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

from ..core.batch import Batch
from ..core.errors import ErrorHandler, ErrorPolicy, Outcome
from ..core.message import Message
from ..core.stage import StageContext, Transform

_FAILED = object()


class EventTransform(Transform):
    """Base for transforms defined by a per-event `call` and how its result is `emit`-ted.

    Subclasses implement `call(msg)` (sync or async: set ``is_async``) and
    `emit(msg, result, out)`; they may override `fast` with a vectorised path
    for the common case where nothing raises.
    """

    is_async: bool = False

    def __init__(self, config: Any = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.ordered = getattr(self.config, "ordered", True)
        self._event_concurrency = getattr(self.config, "concurrency", 1)
        self.errors = ErrorHandler(self.name, getattr(self.config, "on_error", ErrorPolicy()))
        self._sem: asyncio.Semaphore | None = None

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.errors.policy)
        self._sem = asyncio.Semaphore(self._event_concurrency)

    # -- to implement -----------------------------------------------------
    def call(self, msg: Message) -> Any:
        """The per-event work; may return an awaitable when ``is_async``."""
        raise NotImplementedError

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        """Append what ``msg`` becomes, given ``result``, to ``out``."""
        raise NotImplementedError

    def fast(self, batch: Batch) -> Batch | None:
        """Whole-batch path for sync calls; raise to fall back to the per-event path."""
        out: list[Message] = []
        emit, call = self.emit, self.call
        for m in batch.messages:
            emit(m, call(m), out)
        return batch.derive(out)

    # -- engine ------------------------------------------------------------
    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        if not self.is_async:
            try:
                result = self.fast(batch)
            except Exception:  # noqa: BLE001 - fall back to per-event handling
                return await self._per_event(batch)
            self._count_filtered(batch, result)
            return result
        if self._event_concurrency <= 1 or len(batch.messages) == 1:
            return await self._per_event(batch)
        return await self._concurrent(batch)

    def _count_filtered(self, batch: Batch, result: Batch | None) -> None:
        if self.ctx is not None and result is not None and len(result.messages) < len(batch.messages):
            self.ctx.stats.filtered += len(batch.messages) - len(result.messages)

    async def _call_one(self, msg: Message, batch: Batch) -> Any:
        try:
            result = self.call(msg)
            if self.is_async:
                result = await result
            return result
        except Exception as exc:  # noqa: BLE001 - user code may raise anything
            outcome = await self.errors.handle(msg, exc, lambda: self.call(msg), batch)
            return _FAILED if outcome is Outcome.SKIPPED or outcome is Outcome.DEAD else outcome

    async def _per_event(self, batch: Batch) -> Batch:
        out: list[Message] = []
        for m in batch.messages:
            result = await self._call_one(m, batch)
            if result is not _FAILED:
                self.emit(m, result, out)
        result_batch = batch.derive(out)
        self._count_filtered(batch, result_batch)
        return result_batch

    async def _concurrent(self, batch: Batch) -> Batch:
        """Up to ``concurrency`` calls in flight (shared by every batch of the stage), results in order.

        A task is created only once a slot is free, straight from the user's
        coroutine: no parked coroutine per waiting event and no wrapper
        frames. Events that raise go to the error policy once the batch's
        other calls are done.
        """
        sem = self._sem
        assert sem is not None
        loop = asyncio.get_running_loop()
        call = self.call
        msgs = batch.messages
        results: list[Any] = [_FAILED] * len(msgs)
        failed: list[tuple[int, BaseException]] = []
        running: set[asyncio.Task[Any]] = set()
        finished = loop.create_future()

        def done(i: int, task: asyncio.Task[Any]) -> None:
            sem.release()
            running.discard(task)
            if task.cancelled():
                failed.append((i, asyncio.CancelledError()))
            elif (exc := task.exception()) is not None:
                failed.append((i, exc))
            else:
                results[i] = task.result()
            if not running and launched[0] and not finished.done():
                finished.set_result(None)

        launched = [False]
        try:
            for i, m in enumerate(msgs):
                await sem.acquire()
                try:
                    coro = call(m)
                    task = loop.create_task(coro) if asyncio.iscoroutine(coro) else asyncio.ensure_future(coro)
                except Exception as exc:  # noqa: BLE001 - raised before returning its awaitable
                    sem.release()
                    failed.append((i, exc))
                    continue
                running.add(task)
                task.add_done_callback(functools.partial(done, i))
            launched[0] = True
            if running:
                await finished
        finally:
            for task in running:  # cancelled or aborted: stop what is still in flight
                task.cancel()
        if failed:
            failed.sort(key=lambda f: f[0])
            for i, exc in failed:
                if not isinstance(exc, Exception):
                    raise exc
                m = msgs[i]
                outcome = await self.errors.handle(m, exc, lambda m=m: call(m), batch)
                results[i] = _FAILED if outcome is Outcome.SKIPPED or outcome is Outcome.DEAD else outcome
        out: list[Message] = []
        emit = self.emit
        for m, result in zip(msgs, results):
            if result is not _FAILED:
                emit(m, result, out)
        result_batch = batch.derive(out)
        self._count_filtered(batch, result_batch)
        return result_batch


def is_async_callable(fn: Any) -> bool:
    """True for coroutine functions (and callables whose __call__ is one)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))
