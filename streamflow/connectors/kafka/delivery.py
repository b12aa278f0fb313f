"""Delivery: a sink batch from `write` to its ack, re-sending what the brokers did not take.

An `Attempt` is one pass of handing records to the producer. `Deliveries`
awaits it in a task, gives messages the brokers reject for good (too large,
invalid topic) to the sink's ``on_error`` policy, and re-sends everything else
that failed on the pipeline's ``settings.sink_retry`` schedule — nothing is
dropped, nothing acked early — replacing the producer first when it broke.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

from ...core.backoff import Backoff
from ...core.batch import Batch
from ...core.errors import ErrorHandler, PipelineFailed
from ...core.message import Message
from ...core.stats import StageStats
from ._aiokafka import Producer
from .records import Record
from .sink_config import BROKEN_PRODUCER_ERRORS, PERMANENT_ERRORS, SIZE_ERRORS

log = logging.getLogger("streamflow.kafka.sink")


class SentRecords:
    """A record batch handed to the producer, made of records."""

    __slots__ = ("future", "_records")

    def __init__(self, records: list[Record], future: asyncio.Future[Any]) -> None:
        self.future = future
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def messages(self) -> list[Message]:
        return [r.msg for r in self._records]

    def records(self) -> list[Record]:
        return self._records


class SentValues:
    """A record batch of the keyless fast path: values were encoded straight into it.

    It keeps the messages; their records are made again (``remake``) only if it must be re-sent.
    """

    __slots__ = ("future", "_msgs", "_remake")

    def __init__(self, msgs: list[Message], future: asyncio.Future[Any],
                 remake: Callable[[Message], Record]) -> None:
        self.future = future
        self._msgs = msgs
        self._remake = remake

    def __len__(self) -> int:
        return len(self._msgs)

    def messages(self) -> list[Message]:
        return self._msgs

    def records(self) -> list[Record]:
        remake = self._remake
        return [remake(m) for m in self._msgs]


#: One record batch handed to the producer, with its delivery future.
Sent = SentRecords | SentValues


class Attempt:
    """One pass of handing records to the producer.

    ``sent``: the record batches handed over; ``rejected``: messages refused for
    good before sending (cannot be encoded, too large, invalid topic), with the
    error; ``unsent``: records not handed over (e.g. no metadata), to re-send,
    and ``error`` says why.
    """

    __slots__ = ("producer", "sent", "rejected", "unsent", "error")

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.sent: list[Sent] = []
        self.rejected: list[tuple[Message, BaseException]] = []
        self.unsent: list[Record] = []
        self.error: BaseException | None = None

    def reject(self, msgs: Iterable[Message], error: BaseException) -> None:
        self.rejected.extend((m, error) for m in msgs)

    def defer(self, records: Iterable[Record], error: BaseException) -> None:
        self.unsent.extend(records)
        self.error = error


class _Outcome(NamedTuple):
    """What an attempt left to do: records to re-send (and the last error), records to re-send one by one."""

    failed: list[Record]
    error: BaseException | None
    isolate: list[Record]
    refused: int  # messages handed to ``on_error`` for good (skipped, dead-lettered)


#: Sends records again (``alone``: each in its own record batch).
Resend = Callable[[list[Record], bool], Awaitable[Attempt]]
#: Replaces a broken producer (the one given) with a new one.
Renew = Callable[[Producer, BaseException], Awaitable[None]]


class Deliveries:
    """A sink's batches between `dispatch` and their ack; up to ``max_in_flight`` at once.

    When ``retry.max_attempts`` is reached for a batch, the pipeline fails:
    `PipelineFailed`, reported at once through ``on_failure`` (the stage
    context's `fail`) and raised by the next `dispatch` or `flush` (also when
    a message's ``on_error`` policy is ``fail``).
    """

    def __init__(self, name: str, max_in_flight: int, resend: Resend, renew: Renew, errors: ErrorHandler,
                 retry: Backoff, stats: StageStats | None = None,
                 on_failure: Callable[[BaseException], None] | None = None,
                 on_delivered: Callable[[int], None] | None = None) -> None:
        self._on_failure = on_failure
        self._on_delivered = on_delivered
        self.name = name
        self._resend = resend
        self._renew = renew
        self._errors = errors
        self._retry = retry
        self._stats = stats
        self._slots = asyncio.Semaphore(max_in_flight)
        self._inflight: set[asyncio.Task[None]] = set()
        #: Batches being re-sent after a failure right now.
        self.retrying = 0
        self.failure: PipelineFailed | None = None

    async def dispatch(self, batch: Batch, send: Callable[[], Awaitable[Attempt]]) -> None:
        """Take an in-flight slot, hand the batch to the producer (``send``), and deliver it in a task."""
        self.raise_failure()
        await self._slots.acquire()
        try:
            attempt = await send()
        except BaseException:
            self._slots.release()
            raise
        task = asyncio.create_task(self._deliver(batch, attempt), name=f"{self.name}-delivery")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def flush(self) -> None:
        """Wait until every batch dispatched so far is on the brokers (and acked)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        self.raise_failure()

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def cancel(self) -> None:
        """Stop delivering (only left after an abort: those batches stay unacked)."""
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _deliver(self, batch: Batch, attempt: Attempt) -> None:
        """Await a batch's deliveries, re-send failures on the retry schedule, then ack the batch."""
        tries = 0  # attempts that failed (re-sends isolating a too-large record do not count)
        refused = 0
        try:
            while True:
                failed, error, isolate, gone = await self._settle(batch, attempt)
                refused += gone
                if failed:
                    tries += 1
                    if tries == 1:
                        self.retrying += 1
                    await self._before_resend(attempt.producer, len(failed), error, tries)
                elif not isolate:
                    break
                attempt = await self._resend(failed + isolate, bool(isolate))
            if tries:
                log.info("kafka sink %s: delivered after %d re-sends", self.name, tries)
            if self._on_delivered is not None:
                self._on_delivered(len(batch.messages) - refused)
            batch.ack()
        except PipelineFailed as exc:
            if self.failure is None:
                self.failure = exc
                if self._on_failure is not None:
                    self._on_failure(exc)
        finally:
            if tries:
                self.retrying -= 1
            self._slots.release()

    async def _settle(self, batch: Batch, attempt: Attempt) -> _Outcome:
        """Wait for an attempt's record batches; hand what was refused for good to ``on_error``."""
        results = await asyncio.gather(*(s.future for s in attempt.sent), return_exceptions=True)
        handle = self._errors.handle
        for msg, exc in attempt.rejected:
            await handle(msg, exc, None, batch)  # skipped, dead-lettered or raises
        refused = len(attempt.rejected)
        failed, error, isolate = attempt.unsent, attempt.error, []
        for sent, result in zip(attempt.sent, results, strict=True):
            if not isinstance(result, BaseException):
                continue
            if isinstance(result, SIZE_ERRORS) and len(sent) > 1:
                isolate.extend(sent.records())  # the broker refused the record batch: find the culprit
            elif isinstance(result, PERMANENT_ERRORS):
                for msg in sent.messages():
                    await handle(msg, result, None, batch)
                refused += len(sent.messages())
            else:
                failed.extend(sent.records())
                error = result
        return _Outcome(failed, error, isolate, refused)

    async def _before_resend(self, producer: Producer, n: int, error: BaseException | None, tries: int) -> None:
        """Fail the pipeline if the retry schedule is exhausted; else renew a broken producer and wait."""
        what = f"{type(error).__name__}: {error}"
        if self._retry.exhausted(tries):
            raise PipelineFailed(f"kafka sink {self.name!r}: {n} messages not delivered after {tries} attempts "
                                 f"({what}); settings.sink_retry.max_attempts reached") from error
        if self._stats is not None:
            self._stats.retries += 1
        if isinstance(error, BROKEN_PRODUCER_ERRORS):
            await self._renew(producer, error)
        delay = self._retry.delay(tries)
        log.warning("kafka sink %s: %d messages not delivered (%s); re-sending in %.1fs (attempt %d)",
                    self.name, n, what, delay, tries)
        await asyncio.sleep(delay)
