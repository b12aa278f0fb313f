"""HTTP sink (``type: http``): POST each batch to a URL as a JSON array or JSON lines.

A batch is acknowledged only on a 2xx answer. Retrying lives here, not in
the runner, because only the sink knows what is worth retrying and how long
the server asked to wait: 5xx, 408, 429 and connection errors/timeouts are
retried with exponential backoff and jitter (``Retry-After`` honoured), using
the pipeline's ``sink_retry`` settings (``backoff``, ``max_backoff``,
``max_attempts``; by default until it succeeds or shutdown aborts, so nothing
is dropped and the source is held back meanwhile). Any other status is the
server refusing *this* data: the batch's events go to the dead-letter sink
with the status and response body, or, without one, the pipeline fails.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from typing import Any, Literal

import aiohttp
import orjson
from pydantic import ConfigDict, Field, SecretStr, field_validator
from yarl import URL

from ..core.backoff import Backoff
from ..core.batch import Batch
from ..core.errors import PipelineFailed, dead_letter_message
from ..core.registry import SINKS
from ..core.stage import ComponentConfig, Sink, StageContext

log = logging.getLogger("streamflow.connectors.http")

#: Statuses that mean "try again later" rather than "this data is refused".
RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: Longest ``Retry-After`` honoured (seconds).
MAX_RETRY_AFTER = 300.0

CONTENT_TYPES = {"json_array": "application/json", "jsonl": "application/x-ndjson"}


class HttpSinkConfig(ComponentConfig):
    # the URL may carry credentials: validation errors must not echo it
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str = Field(description="http(s) URL each batch is POSTed to")
    format: Literal["json_array", "jsonl"] = Field(
        "json_array", description="body: one JSON array of the batch's events, or one JSON event per line")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra request headers; values may hold secrets "
                                          "(use ${ENV_VAR}) and are never logged")
    timeout: float = Field(30.0, gt=0, description="seconds one request may take before it is retried")
    concurrency: int = Field(1, ge=1, description="batches in flight at once (>1 may deliver out of order)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        url = URL(v)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"expected an http:// or https:// URL, got {cls._safe(v)!r}")
        return v

    @staticmethod
    def _safe(v: str) -> str:
        return str(URL(v).with_user(None).with_query(None).with_fragment(None))


class HttpStatusError(Exception):
    """The server answered a status other than 2xx."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
        self.status = status


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)


def _default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_batch(batch: Batch, fmt: str) -> bytes:
    """The request body of ``batch`` in ``fmt`` (``json_array`` or ``jsonl``)."""
    values = [m.value for m in batch.messages]
    if fmt == "json_array":
        return orjson.dumps(values, default=_default, option=orjson.OPT_NON_STR_KEYS)
    return b"".join(orjson.dumps(v, default=_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
                    for v in values)


@SINKS.register("http")
class HttpSink(Sink[HttpSinkConfig]):
    """POSTs batches to an HTTP endpoint; acks on 2xx, retries on 5xx/429, dead-letters on 4xx.

    With ``concurrency > 1`` up to that many batches are in flight; a failure
    that must stop the pipeline is raised by the next `write` or by `flush`.
    """

    acks_itself = True

    def setup(self) -> None:
        self.url = self.config.url
        self.safe_url = HttpSinkConfig._safe(self.url)
        self._session: aiohttp.ClientSession | None = None
        self._retry = Backoff()
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    @property
    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        if ctx.settings is not None:
            self._retry = ctx.settings.sink_retry
        headers = {"Content-Type": CONTENT_TYPES[self.config.format]}
        headers.update((k, v.get_secret_value()) for k, v in self.config.headers.items())
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            connector=aiohttp.TCPConnector(limit=self.config.concurrency))
        self._slots = asyncio.Semaphore(self.config.concurrency)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- writing -----------------------------------------------------------
    async def write(self, batch: Batch) -> None:
        self._raise_failure()
        if self.config.concurrency == 1:
            await self._deliver(batch)
            return
        assert self._slots is not None
        await self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            self._raise_failure()
        task = asyncio.create_task(self._deliver_in_background(batch), name=f"{self.name}-post")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            if isinstance(self._failure, PipelineFailed):
                raise self._failure
            raise PipelineFailed(f"http sink {self.name!r} failed: {self._failure}") from self._failure

    async def _deliver_in_background(self, batch: Batch) -> None:
        assert self._slots is not None
        try:
            await self._deliver(batch)
        except Exception as exc:  # noqa: BLE001 - surfaced by the next write() or flush()
            if self._failure is None:
                self._failure = exc
        finally:
            self._slots.release()

    async def _deliver(self, batch: Batch) -> None:
        """POST ``batch`` until a final answer; ack it on 2xx, dead-letter it on a refusal."""
        try:
            body = encode_batch(batch, self.config.format)
        except (TypeError, orjson.JSONEncodeError) as exc:
            await self._refuse(batch, exc, 1)
            return
        session = self._session
        assert session is not None
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                async with session.post(self.url, data=body) as resp:
                    if 200 <= resp.status < 300:
                        await resp.read()
                        batch.ack()
                        if attempt > 1:
                            log.info("http sink %s: delivered after %d attempts", self.name, attempt)
                        return
                    detail = (await resp.text(errors="replace"))[:500].strip()
                    error: BaseException = HttpStatusError(resp.status, detail)
                    if not (resp.status >= 500 or resp.status in RETRYABLE_STATUSES):
                        await self._refuse(batch, error, attempt)
                        return
                    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = exc
            await self._backoff(attempt, error, retry_after)

    async def _backoff(self, attempt: int, error: BaseException, retry_after: float | None) -> None:
        policy = self._retry
        if policy.exhausted(attempt):
            raise PipelineFailed(f"http sink {self.name!r}: POST to {self.safe_url} failed {attempt} times: "
                                 f"{type(error).__name__}: {error}") from error
        if self.ctx is not None:
            self.ctx.stats.retries += 1
        delay = policy.delay(attempt) if retry_after is None else retry_after
        log.warning("http sink %s: POST to %s failed (%s: %s); retry %d in %.2fs", self.name, self.safe_url,
                    type(error).__name__, error, attempt, delay)
        await asyncio.sleep(delay)

    async def _refuse(self, batch: Batch, error: BaseException, attempts: int) -> None:
        """The server refused the batch: dead-letter its events, or fail without a dead-letter sink."""
        n = len(batch.messages)
        ctx = self.ctx
        assert ctx is not None
        ctx.stats.errors += n
        if ctx.dead_letter is None or ctx.stats.kind == "dead_letter":
            raise PipelineFailed(f"http sink {self.name!r}: {self.safe_url} refused a batch of {n} events "
                                 f"({type(error).__name__}: {error}) and there is no dead_letter sink")
        records = [dead_letter_message(m, error, self.name, attempts) for m in batch.messages]
        batch.retain()  # the dead-letter batch holds its own reference until written
        await ctx.dead_letter(Batch(records, batch.acks, batch.created))
        ctx.stats.dead_lettered += n
        batch.ack()
        log.warning("http sink %s: %s refused %d events starting at %s (%s); dead-lettered", self.name,
                    self.safe_url, n, batch.messages[0].position() if n else "-", error)
