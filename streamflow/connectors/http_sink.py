"""HTTP sink (``type: http``): POST each batch to a URL, encoded by a codec and joined by a framing.

The body is a JSON array of the batch's events by default (``codec: json``,
``framing: json_array``); ``framing: newline`` posts JSON lines.

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
from typing import Any

import aiohttp
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from yarl import URL

from ..codecs import CodecName, CodecOptions, FramingName, get_codec, get_framing
from ..codecs.config import translate_format
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

#: Content-Type of a body by (codec, framing); anything else is application/octet-stream.
CONTENT_TYPES = {("json", "json_array"): "application/json", ("json", "newline"): "application/x-ndjson",
                 ("text", "newline"): "text/plain; charset=utf-8", ("csv", "newline"): "text/csv"}
#: The deprecated ``format:`` values and the (codec, framing) each one means.
FORMATS = {"json_array": {"codec": "json", "framing": "json_array"},
           "jsonl": {"codec": "json", "framing": "newline"}}


class HttpSinkConfig(ComponentConfig):
    # the URL may carry credentials: validation errors must not echo it
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: str = Field(description="http(s) URL each batch is POSTed to")
    codec: CodecName = Field("json", description="how each event is encoded (see Codecs)")
    framing: FramingName = Field("json_array", description=(
        "how a batch's payloads are joined into one body: json_array (`[a,b]`), newline (JSON lines "
        "with `codec: json`) … (see Framings); replaces `format`, which still works but is deprecated"))
    content_type: str | None = Field(None, description=(
        "the request's Content-Type (default: application/json for json_array, application/x-ndjson "
        "for json lines, text/plain, text/csv, else application/octet-stream)"))
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra request headers; values may hold secrets "
                                          "(use ${ENV_VAR}) and are never logged")
    timeout: float = Field(30.0, gt=0, description="seconds one request may take before it is retried")
    concurrency: int = Field(1, ge=1, description="batches in flight at once (>1 may deliver out of order)")

    @model_validator(mode="before")
    @classmethod
    def _format_alias(cls, data: Any) -> Any:
        """Translate the deprecated ``format:`` into ``codec:`` and ``framing:`` (with a warning)."""
        return translate_format(data, FORMATS)

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


@SINKS.register("http")
class HttpSink(Sink[HttpSinkConfig]):
    """POSTs batches to an HTTP endpoint; acks on 2xx, retries on 5xx/429, dead-letters on 4xx.

    With ``concurrency > 1`` up to that many batches are in flight; a failure
    that must stop the pipeline is raised by the next `write` or by `flush`.
    """

    acks_itself = True
    counts_delivered = True

    def setup(self) -> None:
        cfg = self.config
        self.codec = get_codec(cfg.codec, CodecOptions(header=True))  # each body is a whole document
        self.framing = get_framing(cfg.framing)
        self.content_type = cfg.content_type or CONTENT_TYPES.get((cfg.codec, cfg.framing),
                                                                  "application/octet-stream")
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
        headers = {"Content-Type": self.content_type}
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
        except Exception as exc:  # noqa: BLE001 - fails the pipeline now; raised again by write()/flush()
            if self._failure is None:
                self._failure = exc
                if self.ctx is not None:
                    self.ctx.fail(exc)
        finally:
            self._slots.release()

    async def _deliver(self, batch: Batch) -> None:
        """POST ``batch`` until a final answer; ack it on 2xx, dead-letter it on a refusal."""
        body = self._body([m.value for m in batch.messages])
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
                        if self.ctx is not None:
                            self.ctx.delivered(len(batch.messages))
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

    def _body(self, values: list[Any]) -> bytes:
        """The request body: the codec's header (csv) if it has one, then the framed payloads."""
        header = self.codec.header_for(values[0]) if values else None
        body = self.framing.encode(self.codec, values)
        return body if header is None else self.framing.frame([header]) + body

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
