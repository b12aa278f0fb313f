"""Lifecycle of aiokafka clients: started with connection retries, the sink's producer renewed when broken.

A client that fails to start is stopped before the error propagates (no
"Unclosed AIOKafkaProducer"). A broker that refuses producer ids
(InitProducerId; some Kafka-compatible brokers refuse the version 0 aiokafka
sends) fails an idempotent or transactional producer with `ProducerIdRefused`;
the Kafka sink under at-least-once then runs without idempotence, and says so once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Protocol, TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from ...core.backoff import Backoff
from ...core.error_text import describe
from ._aiokafka import Producer, producer_id_refused

log = logging.getLogger("streamflow.kafka.sink")

#: How the first connection is retried (until the caller's timeout).
CONNECT_RETRY = Backoff(backoff=0.2, max_backoff=5.0)


class KafkaUnreachable(ConnectionError):
    """No broker answered at the bootstrap address within ``connect_timeout``; the message says what to do."""


def unreachable(what: str, bootstrap: str, timeout: float, exc: BaseException) -> KafkaUnreachable:
    """The error a client that never connected fails with, with the hint a newcomer needs."""
    return KafkaUnreachable(
        f"{what}: cannot connect to Kafka at {bootstrap} within {timeout:g}s ({describe(exc)}). "
        f"Is a broker running at {bootstrap}? Start one with `streamflow dev kafka`, "
        "or set KAFKA_BOOTSTRAP to your broker's host:port")


class _Client(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Client)


class ProducerIdRefused(RuntimeError):
    """The broker gave a producer no producer id: idempotence and transactions are impossible against it."""


def refused(what: str, bootstrap: str, exc: BaseException) -> ProducerIdRefused:
    """The error an idempotent or transactional producer fails with when the broker refuses InitProducerId."""
    return ProducerIdRefused(
        f"{what}: the broker at {bootstrap} refused to give a producer id (InitProducerId, which aiokafka "
        f"sends in version 0, answered {answer(exc)}). Idempotent and transactional producers need one: "
        "`delivery: exactly_once` cannot run against this broker; at-least-once can (the Kafka sink then "
        "turns idempotence off itself)")


def answer(exc: BaseException) -> str:
    """A broker's refusal as aiokafka words it (``[Error -1] UnknownError``)."""
    return str(exc) or type(exc).__name__


class _AiokafkaRefusalLog(logging.Filter):
    """Drops aiokafka's "Unexpected error during InitProducerIdRequest": `ProducerIdRefused` says it better."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unexpected error during InitProducerIdRequest")


_SENDER_LOG = logging.getLogger("aiokafka.producer.sender")
if not any(isinstance(f, _AiokafkaRefusalLog) for f in _SENDER_LOG.filters):
    _SENDER_LOG.addFilter(_AiokafkaRefusalLog())


async def start_client(factory: Callable[[], ClientT], what: str, timeout: float,
                       logger: logging.Logger, bootstrap: str) -> ClientT:
    """Create and start an aiokafka client, retrying on `CONNECT_RETRY` for up to ``timeout`` seconds.

    A broker that is briefly unreachable at startup (a rolling restart, a
    container starting before Kafka) is waited for instead of failing the run;
    one that never answers fails it with `KafkaUnreachable`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while True:
        client = factory()
        try:
            await client.start()
            return client
        except (KafkaConnectionError, KafkaTimeoutError, OSError) as exc:
            await client.stop()
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:  # the whole `timeout` was spent trying: not before
                raise unreachable(what, bootstrap, timeout, exc) from exc
            delay = min(CONNECT_RETRY.delay(attempt), remaining)
            logger.warning("%s: cannot connect to %s yet (%s); retrying in %.1fs",
                           what, bootstrap, describe(exc), delay)
            await asyncio.sleep(delay)
        except BaseException as exc:
            await _stop_failed(client, what, logger)
            if producer_id_refused(exc):
                raise refused(what, bootstrap, exc) from exc
            raise


async def _stop_failed(client: _Client, what: str, logger: logging.Logger) -> None:
    """Stop a client whose start failed (its connections are open), keeping the start's error."""
    try:
        await client.stop()
    except Exception as exc:  # noqa: BLE001 - the start's error is the one to report
        logger.debug("%s: stopping after a failed start: %s", what, describe(exc))


class ProducerFactory(Protocol):
    """Makes the sink's producer (not started) as its config says; ``idempotence=False`` turns that off."""

    def __call__(self, *, idempotence: bool = True) -> Producer: ...


#: The one warning of a sink whose broker refused a producer id (`RenewableProducer`).
WITHOUT_IDEMPOTENCE = (
    "%s: the broker at %s refused a producer id (InitProducerId answered %s), so its producer runs "
    "without idempotence: still acks=all, and records keep their order per partition (aiokafka sends one "
    "batch per partition at a time), but a retried send can write a record twice")


class RenewableProducer:
    """The Kafka sink's producer (at-least-once): started, replaced by a new one when it broke, stopped in time.

    Against a broker that refuses producer ids it falls back to a producer
    without idempotence, once, with one warning.
    """

    def __init__(self, what: str, new: ProducerFactory, connect_timeout: float,
                 stop_timeout: float, bootstrap: str) -> None:
        self.what = what
        self.bootstrap = bootstrap
        self._new = new
        #: False once the broker refused a producer id: every producer from then on is made without idempotence.
        self.idempotence = True
        self._connect_timeout = connect_timeout
        self._stop_timeout = stop_timeout
        self._current: Producer | None = None
        self._renewing = asyncio.Lock()

    @property
    def started(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> Producer:
        """The producer to send with now."""
        if self._current is None:
            raise RuntimeError(f"{self.what}: the producer is not started")
        return self._current

    async def start(self) -> None:
        self._current = await self._start(self._connect_timeout)

    async def _start(self, timeout: float) -> Producer:
        """A started producer: idempotent unless the broker refused a producer id (then never again)."""
        try:
            return await start_client(self._make, self.what, timeout, log, self.bootstrap)
        except ProducerIdRefused as exc:
            if not self.idempotence:
                raise
            self.idempotence = False
            log.warning(WITHOUT_IDEMPOTENCE, self.what, self.bootstrap, answer(exc.__cause__ or exc))
            return await start_client(self._make, self.what, timeout, log, self.bootstrap)

    def _make(self) -> Producer:
        return self._new(idempotence=self.idempotence)

    async def renew(self, broken: Producer, error: BaseException) -> None:
        """Replace a producer whose idempotence state is broken (new producer id, fresh sequences).

        aiokafka's sender stops for good on e.g. an out-of-order sequence after a
        broker restart; every delivery task that sees it calls this, the first
        one replaces the producer and the others find it replaced.
        """
        async with self._renewing:
            if self._current is not broken:
                return
            log.warning("%s: producer unusable (%s: %s); starting a new one", self.what,
                        type(error).__name__, error)
            self._current = await self._start(math.inf)
        try:
            await asyncio.wait_for(broken.stop(), 5)
        except Exception as exc:  # noqa: BLE001 - it is broken already; its records are re-sent
            log.debug("%s: stopping the broken producer: %s", self.what, exc)

    async def stop(self) -> None:
        producer, self._current = self._current, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self._stop_timeout)
            except TimeoutError:
                log.warning("%s: producer did not stop in time", self.what)
