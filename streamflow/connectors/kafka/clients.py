"""Lifecycle of aiokafka clients: started with connection retries, the sink's producer renewed when broken."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Protocol, TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from ...core.backoff import Backoff
from ...core.error_text import describe
from ._aiokafka import Producer

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


class RenewableProducer:
    """The Kafka sink's producer: started, replaced by a new one when it broke, stopped in time."""

    def __init__(self, what: str, new: Callable[[], Producer], connect_timeout: float,
                 stop_timeout: float, bootstrap: str) -> None:
        self.what = what
        self.bootstrap = bootstrap
        self._new = new
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
        self._current = await start_client(self._new, self.what, self._connect_timeout, log, self.bootstrap)

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
            self._current = await start_client(self._new, self.what, math.inf, log, self.bootstrap)
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
