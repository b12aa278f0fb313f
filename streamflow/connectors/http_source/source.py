"""`HttpSource` (``type: http``): a webhook endpoint that turns each POST into one batch.

A request is answered 200 only once every one of its events has been
acknowledged downstream (written by every sink it was routed to, filtered, or
dead-lettered), so a client that gets a 200 may forget the events; on 503
(pipeline full or shutting down) or 504 (not acknowledged in time) it retries:
at-least-once delivery, like a Kafka position that is committed only when acked.

What a request goes through, cheapest check first: the connection cap and
header deadline (`ConnectionGuard`), the client's rate (429), the bearer
token (401), the Content-Type (415), the declared size (413), room in the
byte budget (503 + Retry-After, waiting up to ``timeout``), the body's
arrival (408 after ``body_timeout``), its signature (401), its parse (400, or
422 for a non-object event), room in the queue (503). Every answer is counted
by status in ``responses`` (``streamflow_http_responses_total``).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from ...core.batch import Batch
from ...core.message import Message
from ...core.registry import SOURCES
from ...core.stage import Source, StageContext
from ...security.signatures import BadSignature, Verifier
from .body import BadBody, check_content_type, parse_body
from .config import HttpSourceConfig
from .connections import ConnectionGuard
from .limits import ByteBudget, RateLimiter

log = logging.getLogger("streamflow.connectors.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: aiohttp's read buffer per request; it pauses a connection at twice this much unread body.
READ_BUFSIZE = 16 * 1024
#: Bodies from this size on are parsed on a worker thread.
PARSE_IN_THREAD = 256 * 1024
#: Large bodies parsed at once (each on its own thread).
PARSE_THREADS = 2


class _Request:
    """One accepted request on its way through the pipeline."""

    __slots__ = ("key", "batch", "read")

    def __init__(self, key: tuple[str, int], batch: Batch) -> None:
        self.key = key
        self.batch = batch
        self.read = False  # handed to the pipeline by read()


class Refused(Exception):
    """A request answered with an error status before anything of it was ingested."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers

    def response(self) -> web.Response:
        resp = web.Response(status=self.status, body=orjson.dumps({"error": str(self)}),
                            content_type="application/json", headers=self.headers)
        if self.status in _CLOSING:
            resp.force_close()  # the rest of the body is not worth waiting for
        return resp


#: Answers after which the connection is closed: the body was not (fully) read.
_CLOSING = frozenset({408, 413, 499})


@SOURCES.register("http")
class HttpSource(Source[HttpSourceConfig]):
    """Webhook ingest: each POST becomes one batch, answered once it is acknowledged.

    Every request is its own ack partition ``("http", n)``; nothing is
    checkpointed — the client holds the data until it gets its 200. The
    bound port is ``self.port`` once open.
    """

    def setup(self) -> None:
        cfg = self.config
        self.port: int | None = None
        self._web: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._guard: ConnectionGuard | None = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._accepting = False
        self._stopped = asyncio.Event()  # no more reads: queued requests will not be processed
        self._closed = asyncio.Event()   # shutting down: nothing pending will be acknowledged
        self._ids = itertools.count()
        self._next_offset = 0  # event sequence number, the messages' `offset`
        token = cfg.auth_token
        self._expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None
        self._verifier = Verifier(cfg.signature) if cfg.signature is not None else None
        self._limiter = RateLimiter(cfg.rate_limit) if cfg.rate_limit is not None else None
        #: Bytes of request bodies held, from before they are read until they are answered.
        self.budget = ByteBudget(cfg.max_inflight_bytes)
        self._parsing = asyncio.Semaphore(PARSE_THREADS)
        #: Answers given, by status code (and connections refused or timed out: "503", "408").
        self.responses: Counter[str] = Counter()

    @property
    def ready(self) -> bool:
        return self._accepting

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        cfg = self.config
        tls = cfg.tls.context() if cfg.tls is not None else None
        self._queue = asyncio.Queue(cfg.queue_size)
        app = web.Application(client_max_size=cfg.max_body_bytes, middlewares=[self._middleware])
        app.router.add_post(cfg.path, self._handle)
        # lingering_time: how long the unread rest of a refused body is drained before closing
        # read_bufsize: aiohttp stops reading a body at twice this much unread (contract 1)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                               lingering_time=1.0, read_bufsize=READ_BUFSIZE)
        await runner.setup()
        assert runner.server is not None
        self._guard = ConnectionGuard(runner.server, cfg.max_connections, cfg.header_timeout,
                                      self._count, cfg.retry_after)
        try:
            self._listener = await self._guard.listen(cfg.host, cfg.port, tls)
        except BaseException:
            await runner.cleanup()
            raise
        self._web = runner
        self.port = int(self._listener.sockets[0].getsockname()[1])
        self._accepting = True
        log.info("http source %s listening on %s://%s:%d%s", self.name, "https" if tls else "http",
                 cfg.host, self.port, cfg.path)

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
        if self._listener is not None:
            self._listener.close()
        if self._web is not None:
            web_runner, self._web = self._web, None
            await web_runner.cleanup()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.wait_closed()

    # -- request handling -------------------------------------------------
    def _count(self, code: str) -> None:
        self.responses[code] += 1

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: the header deadline off while it is handled, its answer counted."""
        assert self._guard is not None
        self._guard.busy(request.transport)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._count(str(status))
            self._guard.idle(request.transport)

    async def _handle(self, request: web.Request) -> web.Response:
        size = 0
        try:
            self._admit(request)
            size = await self._reserve(request)
            body, size = await self._read_body(request, size)
            if self._verifier is not None:
                self._verifier.verify(request.headers, body)
            values, raws = await self._parse(body, request.content_type)
            del body
            if not values:
                return web.json_response({"accepted": 0})
            return await self._ingest(values, raws)
        except Refused as exc:
            return exc.response()
        except BadSignature as exc:
            log.warning("http source %s: refused a request from %s: %s", self.name, request.remote, exc)
            return Refused(401, str(exc)).response()
        except BadBody as exc:
            if self.ctx is not None:
                self.ctx.stats.errors += 1
            log.warning("http source %s: rejected a request from %s: %s", self.name, request.remote, exc)
            return Refused(exc.status, str(exc)).response()
        finally:
            self.budget.release(size)

    def _admit(self, request: web.Request) -> None:
        """The checks on the request head (rate, token, state, type, size); raise `Refused`."""
        if self._limiter is not None:
            wait = self._limiter.acquire(request.remote or "")
            if wait > 0:
                raise Refused(429, "too many requests", {"Retry-After": str(max(1, round(wait + 0.5)))})
        if self._expected is not None and not hmac.compare_digest(
                request.headers.get("Authorization", "").encode(), self._expected):
            raise Refused(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        if not self._accepting:
            raise self._unavailable("shutting down")
        check_content_type(request.content_type)
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise Refused(413, f"body larger than {limit} bytes")

    async def _reserve(self, request: web.Request) -> int:
        """Reserve the body's size (its Content-Length, else ``max_body_bytes``) in the byte budget."""
        length = request.content_length
        size = length if length is not None else self.config.max_body_bytes
        if self.budget.try_reserve(size):
            return size
        transport = request.transport
        if transport is not None and not transport.is_closing():  # no more of the body in memory meanwhile
            transport.pause_reading()
        try:
            if not await self.budget.reserve(size, self.config.timeout):
                raise self._unavailable("too much data in flight; retry later")
        finally:
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        return size

    async def _read_body(self, request: web.Request, size: int) -> tuple[bytes, int]:
        """The body, read within ``body_timeout``; and the bytes now reserved for it (its true size).

        Read from the stream, not with ``request.read()``: aiohttp keeps what that
        returns on the request, and an idle keep-alive connection keeps its last
        request — a body per connection outside the budget.
        """
        limit = self.config.max_body_bytes
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(self.config.body_timeout):
                while chunk := await request.content.readany():
                    received += len(chunk)
                    if received > limit:
                        raise Refused(413, f"body larger than {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise Refused(408, f"body not received within {self.config.body_timeout}s") from None
        except (ConnectionError, aiohttp.ClientPayloadError):
            raise Refused(499, "client went away while sending the body") from None
        body = b"".join(chunks)
        del chunks
        if received < size:  # a chunked body reserved `max_body_bytes`: give back the rest
            self.budget.release(size - received)
            size = received
        return body, size

    async def _parse(self, body: bytes, content_type: str) -> tuple[list[Any], list[bytes] | None]:
        """`parse_body`; a large body on a worker thread, so that /healthz and small requests are
        answered meanwhile (the parse holds the GIL, but the loop gets it every switch interval)."""
        if len(body) < PARSE_IN_THREAD:
            return parse_body(body, content_type, self.config.non_object)
        async with self._parsing:
            return await asyncio.to_thread(parse_body, body, content_type, self.config.non_object)

    def _unavailable(self, why: str) -> Refused:
        return Refused(503, why, {"Retry-After": str(self.config.retry_after)})

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
                raise self._unavailable("pipeline is full; retry later" if self._accepting
                                        else "shutting down")
            acked = await self._wait_acked(req)
        finally:
            self.tracker.forget([key])
        if acked is None:
            raise self._unavailable("shutting down before the events were processed; retry")
        if not acked:
            raise Refused(504, f"events not acknowledged within {self.config.ack_timeout}s; retry")
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
