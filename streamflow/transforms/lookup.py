"""`HttpLookup`: the outbound call of ``enrich`` with ``url`` — bounded, retried, and polite.

One lookup is ``GET url`` with the key in place of ``{key}``: a 2xx JSON
object is the result, 404 is "not found" (None). Every attempt has a
``timeout``; a retryable answer (by default 408, 429 and 5xx) or a network
error is retried on the ``retry`` `Backoff`, waiting at least what a
``Retry-After`` header asks; any other status fails at once. Each event's
lookup retries on its own, so up to ``concurrency`` lookups (and their
retries) are in flight together. A `CircuitBreaker` stops calling a service
that keeps failing. Errors name the URL without its query string or
credentials (`safe_url`): an API key in the URL never reaches a log line or a
dead-letter record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import Field

from ..connectors.http_sink import retry_after_seconds
from ..core.backoff import Backoff
from ..core.configs import ConfigModel
from ..security.urls import safe_url, scrub

log = logging.getLogger("streamflow.transforms.enrich")

#: A status class a `retry_statuses` entry may name instead of one status.
StatusClass = Literal["4xx", "5xx"]
#: Default retryable answers: request timeout, too many requests, any server error.
DEFAULT_RETRY_STATUSES: list[int | StatusClass] = [408, 429, "5xx"]
#: Seconds one lookup attempt may take when no ``timeout`` is configured.
DEFAULT_TIMEOUT = 10.0


class LookupFailed(RuntimeError):
    """An HTTP lookup failed for good: a non-retryable status, retries spent, or the breaker open."""


class BreakerConfig(ConfigModel):
    """After ``failures`` failed lookups in a row, fail fast for ``open_seconds``, then try one again."""

    failures: int = Field(5, ge=1, description="failed lookups in a row that open the breaker")
    open_seconds: float = Field(10.0, gt=0, description="seconds lookups fail at once before one is tried")


class CircuitBreaker:
    """Closed → open after ``failures`` in a row → one trial call after ``open_seconds`` → closed or open."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.failed = 0
        self.opened_at: float | None = None
        self._trial = False

    def allow(self, now: float | None = None) -> bool:
        """Whether a call may go out now (while half-open: only one trial at a time)."""
        if self.opened_at is None:
            return True
        now = time.monotonic() if now is None else now
        if now - self.opened_at < self.config.open_seconds or self._trial:
            return False
        self._trial = True
        return True

    def record(self, ok: bool, now: float | None = None) -> None:
        """The outcome of a call that was allowed."""
        self._trial = False
        if ok:
            self.failed, self.opened_at = 0, None
            return
        self.failed += 1
        if self.failed >= self.config.failures:
            if self.opened_at is None:
                log.warning("enrich: %d lookups failed in a row; failing fast for %gs", self.failed,
                            self.config.open_seconds)
            self.opened_at = time.monotonic() if now is None else now


def retryable(status: int, statuses: Sequence[int | str]) -> bool:
    """Whether ``status`` is in ``statuses`` (numbers, or classes such as ``"5xx"``)."""
    return status in statuses or f"{status // 100}xx" in statuses


class _Retry(Exception):
    """One attempt failed in a way worth retrying; ``wait`` is the server's Retry-After."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class HttpLookup:
    """``await lookup(key)``: the JSON object for ``key``, None if not found; raises `LookupFailed`."""

    def __init__(self, url: str, session: aiohttp.ClientSession, *, timeout: float, retry: Backoff,
                 retry_statuses: Sequence[int | str], breaker: BreakerConfig | None = None,
                 on_retry: Callable[[], None] | None = None) -> None:
        self.url = url
        self.shown = safe_url(url)
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry = retry
        self.retry_statuses = list(retry_statuses)
        self.breaker = CircuitBreaker(breaker) if breaker is not None else None
        self.on_retry = on_retry  # told of each retry (the stage's ``retries`` count)

    async def __call__(self, key: Any) -> Any:
        url = self.url.replace("{key}", quote(str(key), safe=""))
        attempt = 0
        while True:
            attempt += 1
            if self.breaker is not None and not self.breaker.allow():
                raise LookupFailed(f"GET {self.shown}: circuit open after repeated failures")
            try:
                found = await self._attempt(url)
            except _Retry as exc:
                self._record(False)
                if self.retry.exhausted(attempt):
                    raise LookupFailed(f"{exc} (after {attempt} attempts)") from None
                if self.on_retry is not None:
                    self.on_retry()
                await asyncio.sleep(max(self.retry.delay(attempt), exc.wait or 0.0))
                continue
            except LookupFailed:
                self._record(True)  # the service answered: it is up, the request was refused
                raise
            self._record(True)
            return found

    def _record(self, ok: bool) -> None:
        if self.breaker is not None:
            self.breaker.record(ok)

    async def _attempt(self, url: str) -> Any:
        """One GET: the result, or `_Retry` / `LookupFailed` with a message free of secrets."""
        try:
            async with self.session.get(url, timeout=self.timeout) as resp:
                status = resp.status
                if status == 404:
                    return None
                if 200 <= status < 300:
                    return orjson.loads(await resp.read())
                wait = retry_after_seconds(resp.headers.get("Retry-After"))
        except TimeoutError:
            raise _Retry(f"GET {safe_url(url)}: no answer within {self.timeout.total:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Retry(f"GET {safe_url(url)}: {type(exc).__name__}: {scrub(str(exc), url)}") from None
        except orjson.JSONDecodeError as exc:
            raise LookupFailed(f"GET {safe_url(url)}: the answer is not JSON: {exc}") from None
        message = f"GET {safe_url(url)} answered {status}"
        if retryable(status, self.retry_statuses):
            raise _Retry(message, wait)
        raise LookupFailed(message)
