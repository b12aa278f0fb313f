"""The HTTP source's listening socket: a cap on connections and a deadline for headers.

aiohttp reads a request's headers for as long as the client takes and keeps
any number of connections open. `ConnectionGuard` wraps each connection's
aiohttp protocol so that one over ``max_connections`` is answered 503 and
closed at once, and one that has not sent a complete request head within
``header_timeout`` (after the TLS handshake, or after its previous answer) is
closed: 408 if it had started a request, silently if it was idle. The TLS
handshake itself is bounded by the same timeout.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import orjson
from aiohttp import web


def raw_response(status: str, error: str, extra: str = "") -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a JSON error body."""
    body = orjson.dumps({"error": error})
    head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n")
    return head.encode() + body


class ConnectionGuard:
    """Serves an aiohttp `web.Server` with connection limits; ``count(code)`` hears of each refusal."""

    def __init__(self, server: web.Server, max_connections: int, header_timeout: float,
                 count: Callable[[str], None], retry_after: int = 1) -> None:
        self.server = server
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.count = count
        self.refusal = raw_response("503 Service Unavailable", "too many connections; retry later",
                                    f"Retry-After: {retry_after}\r\n")
        self.connections: dict[asyncio.BaseTransport, _Guarded] = {}

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None) -> asyncio.Server:
        """Start listening (the caller closes the returned server)."""
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: _Guarded(self), host, port, ssl=tls,
                                        ssl_handshake_timeout=self.header_timeout if tls else None)

    def busy(self, transport: asyncio.BaseTransport | None) -> None:
        """A request head arrived on ``transport``: no deadline while it is handled."""
        conn = self.connections.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy()

    def idle(self, transport: asyncio.BaseTransport | None) -> None:
        """``transport``'s request was answered: the next head (or the close) is due within the timeout."""
        conn = self.connections.get(transport) if transport is not None else None
        if conn is not None:
            conn.done()


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, a header deadline around it."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = False  # bytes of a request arrived since the deadline was armed
        self.requests = 0     # requests being handled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self.guard
        self.transport = transport
        if len(guard.connections) >= guard.max_connections:
            guard.count("503")
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(guard.refusal)
            transport.close()
            return
        guard.connections[transport] = self
        self.inner = guard.server()
        self.inner.connection_made(transport)
        self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.inner is not None:
            self.guard.connections.pop(self.transport, None)  # type: ignore[arg-type]
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.started = True
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- the deadline ------------------------------------------------------
    def busy(self) -> None:
        self.requests += 1
        self._disarm()

    def done(self) -> None:
        self.requests = max(0, self.requests - 1)
        if self.requests == 0:
            self.arm()

    def arm(self) -> None:
        """Start the deadline for the next request head (after connecting or answering)."""
        self._disarm()
        self.started = False
        self.timer = asyncio.get_running_loop().call_later(self.guard.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expire(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.started:  # a request began and its head is still incomplete: a slow client
            self.guard.count("408")
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(raw_response("408 Request Timeout", "request headers not received in time"))
        transport.close()
