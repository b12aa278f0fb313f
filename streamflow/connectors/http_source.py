"""HTTP source (``type: http``): a webhook endpoint that turns each POST into one batch.

A request is answered 200 only once every one of its events has been
acknowledged downstream (written by every sink it was routed to, filtered, or
dead-lettered), so a client that gets a 200 may forget the events; on 503
(pipeline full or shutting down) or 504 (not acknowledged in time) it retries:
at-least-once delivery, like a Kafka position that is committed only when acked.

Backpressure reaches the client: requests become batches in a small bounded
queue; a request waits up to ``timeout`` for room, then gets 503 with
``Retry-After``. A malformed body is rejected whole (400), nothing of it ingested.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import Field, SecretStr, field_validator

from ..codecs import get_framing
from ..codecs.text import JsonCodec
from ..core.batch import Batch
from ..core.message import Message
from ..core.registry import SOURCES
from ..core.stage import ComponentConfig, Source, StageContext

log = logging.getLogger("streamflow.connectors.http")

#: Content types read as one JSON document (an event, or an array of events).
JSON_TYPES = frozenset({"application/json"})
#: Content types read as JSON lines (one event per non-blank line).
LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines",
                         "application/jsonlines", "text/plain"})
#: Decodes each frame of a body.
_JSON = JsonCodec()


class HttpSourceConfig(ComponentConfig):
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on (0 picks a free one)")
    path: str = Field("/", description="URL path accepting POSTed events")
    auth_token: SecretStr | None = Field(
        None, description="require `Authorization: Bearer <token>` (use ${ENV_VAR}; never logged)")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1, description="larger request bodies get 413")
    timeout: float = Field(5.0, gt=0, description="seconds a request waits for room in the queue "
                                                  "before it is answered 503 with Retry-After")
    ack_timeout: float = Field(30.0, gt=0, description="seconds a request waits for its events to be "
                                                       "acknowledged downstream before it is answered 504")
    queue_size: int = Field(4, ge=1, description="requests (batches) buffered between the server and "
                                                 "the pipeline")
    retry_after: int = Field(1, ge=0, description="seconds in the Retry-After header of a 503")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must start with '/'")
        return v


class BadBody(ValueError):
    """The request body is not what its Content-Type says (answered 400)."""


def parse_body(body: bytes, content_type: str) -> tuple[list[Any], list[bytes] | None]:
    """The events of a request body and, for JSON lines, each event's raw line.

    The Content-Type picks the framing of the body and the ``json`` codec
    decodes each frame: ``application/json`` is one frame (``whole``) holding
    one event or a JSON array of events; ``application/x-ndjson`` (and the
    other JSON-lines types, ``text/plain``) is ``newline``-framed, one event
    per non-blank line. Raises `BadBody` naming the first problem.
    """
    if content_type in JSON_TYPES:
        try:
            doc = _JSON.decode(body)
        except ValueError as exc:
            raise BadBody(f"invalid JSON: {exc}") from None
        return (doc if isinstance(doc, list) else [doc]), None
    if content_type in LINES_TYPES:
        lines = _frames(body, "newline")
        values: list[Any] = []
        raws: list[bytes] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                values.append(_JSON.decode(line))
            except ValueError as exc:
                raise BadBody(f"invalid JSON on line {number}: {exc}") from None
            raws.append(line)
        return values, raws
    accepted = ", ".join(sorted(JSON_TYPES | LINES_TYPES))
    raise BadBody(f"unsupported Content-Type {content_type!r}; expected one of: {accepted}")


def _frames(body: bytes, framing: str) -> list[bytes]:
    """The frames of a whole body in ``framing`` (its last frame needs no delimiter)."""
    deframer = get_framing(framing).deframer()
    frames = deframer.feed(body)
    if (rest := deframer.rest()) is not None:
        frames.append(rest)
    return [f[:-1] if f.endswith(b"\r") else f for f in frames] if deframer.saw_cr else frames


class _Request:
    """One accepted request on its way through the pipeline."""

    __slots__ = ("key", "batch", "read")

    def __init__(self, key: tuple[str, int], batch: Batch) -> None:
        self.key = key
        self.batch = batch
        self.read = False  # handed to the pipeline by read()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}),
                        content_type="application/json", headers=headers)


@SOURCES.register("http")
class HttpSource(Source[HttpSourceConfig]):
    """Webhook ingest: each POST becomes one batch, answered once it is acknowledged.

    Every request is its own ack partition ``("http", n)``; nothing is
    checkpointed — the client holds the data until it gets its 200. The
    bound port is ``self.port`` once open.
    """

    def setup(self) -> None:
        self.port: int | None = None
        self._web: web.AppRunner | None = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._accepting = False
        self._stopped = asyncio.Event()  # no more reads: queued requests will not be processed
        self._closed = asyncio.Event()   # shutting down: nothing pending will be acknowledged
        self._ids = itertools.count()
        self._next_offset = 0  # event sequence number, the messages' `offset`
        token = self.config.auth_token
        self._expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None

    @property
    def ready(self) -> bool:
        return self._accepting

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self._queue = asyncio.Queue(self.config.queue_size)
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post(self.config.path, self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.config.host, self.config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._web = runner
        self.port = int(runner.addresses[0][1])
        self._accepting = True
        log.info("http source %s listening on http://%s:%d%s", self.name, self.config.host, self.port,
                 self.config.path)

    async def read(self) -> Batch | None:
        assert self._queue is not None
        try:
            req = await self._queue.get()
        except asyncio.CancelledError:
            self._stop_accepting()  # the runner stops reading: shutdown has begun
            raise
        req.read = True
        return req.batch

    async def commit(self) -> None:
        # Nothing to checkpoint: the client holds each request until it is answered 200.
        self.tracker.take_committable()

    def _stop_accepting(self) -> None:
        self._accepting = False
        self._stopped.set()

    async def close(self) -> None:
        self._stop_accepting()
        self._closed.set()
        if self._web is not None:
            web_runner, self._web = self._web, None
            await web_runner.cleanup()

    # -- request handling -------------------------------------------------
    def _unavailable(self, why: str) -> web.Response:
        return _error(503, why, {"Retry-After": str(self.config.retry_after)})

    async def _handle(self, request: web.Request) -> web.Response:
        if self._expected is not None and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), self._expected):
            return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if not self._accepting:
            return self._unavailable("shutting down")
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"body larger than {limit} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {limit} bytes")
        try:
            values, raws = parse_body(body, request.content_type)
        except BadBody as exc:
            if self.ctx is not None:
                self.ctx.stats.errors += 1
            log.warning("http source %s: rejected a request from %s: %s", self.name, request.remote, exc)
            return _error(400, str(exc))
        if not values:
            return web.json_response({"accepted": 0})
        return await self._ingest(values, raws)

    async def _ingest(self, values: list[Any], raws: list[bytes] | None) -> web.Response:
        now = time.time()
        first = self._next_offset
        self._next_offset += len(values)
        messages = [Message(v, timestamp=now, topic="http", offset=first + i,
                            raw=raws[i] if raws is not None else None) for i, v in enumerate(values)]
        key = ("http", next(self._ids))
        req = _Request(key, Batch(messages, [self.tracker.track(key, first + len(values))]))
        try:
            if not await self._enqueue(req):
                return self._unavailable("pipeline is full; retry later" if self._accepting
                                         else "shutting down")
            acked = await self._wait_acked(req)
        finally:
            self.tracker.forget([key])
        if acked is None:
            return self._unavailable("shutting down before the events were processed; retry")
        if not acked:
            return _error(504, f"events not acknowledged within {self.config.ack_timeout}s; retry")
        return web.json_response({"accepted": len(values)})

    async def _enqueue(self, req: _Request) -> bool:
        """Put the request's batch in the queue, waiting up to ``timeout``; False if it did not fit."""
        assert self._queue is not None
        try:
            self._queue.put_nowait(req)
            return True
        except asyncio.QueueFull:
            pass
        put = asyncio.ensure_future(self._queue.put(req))
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({put, stopped}, timeout=self.config.timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            put.cancel()
        # Queued even if stopping meanwhile: `_wait_acked` sees it was never read.
        return put.done() and not put.cancelled()

    async def _wait_acked(self, req: _Request) -> bool | None:
        """True once acknowledged, False after ``ack_timeout``, None if it never will be (shutdown)."""
        drained = asyncio.ensure_future(self.tracker.wait_drained([req.key], self.config.ack_timeout))
        try:
            while True:
                # Before the pipeline read it, a stop means it never will; after, only close does.
                watch = self._closed if req.read else self._stopped
                waiter = asyncio.ensure_future(watch.wait())
                try:
                    await asyncio.wait({drained, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if drained.done():
                    return drained.result()
                if self._closed.is_set() or not req.read:
                    return None
        finally:
            drained.cancel()
