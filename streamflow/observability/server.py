"""The operations HTTP server: ``/metrics``, ``/healthz`` and ``/readyz`` for container probes.

* ``/metrics`` — the runner's `PipelineMetrics` in the Prometheus text
  format (OpenMetrics when the scraper asks for it).
* ``/healthz`` — 200 as long as the event loop answers. It is served by the
  loop itself, so a blocked or dead loop fails the liveness probe; 503 while
  the pipeline is stalled, if ``settings.stall_unhealthy`` asks for that.
* ``/readyz`` — 200 only while `Runner.ready` (running, every source and sink
  connected, no keyed state being restored); 503 with a JSON reason while
  starting, restoring, draining or stopped, so a load balancer or Kubernetes
  stops routing to a pod that is going away or not caught up yet.

With ``tls`` (`ServerTls`, ``settings.http.tls`` in YAML) the server speaks
HTTPS only, and with its ``client_cafile`` it requires client certificates
(mutual TLS) — a scraper and a kubelet then need a certificate of that CA.

`serve` is a runner *watcher*: the runner starts it as a task before it opens
any stage (``/readyz`` says 503 while sources connect) and cancels it at the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ..security.tls import ServerTls
from .logging import redact
from .metrics import PipelineMetrics

if TYPE_CHECKING:
    from ..core.runner import Runner

log = logging.getLogger("streamflow.http")

#: An endpoint: a request in, a response out.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class EndpointServer:
    """An aiohttp server of a few GET endpoints on ``host:port`` (HTTPS with ``tls``); an async context
    manager. Subclasses name the endpoints in `routes`."""

    #: What the "serving …" log line names.
    serving = "/metrics, /healthz, /readyz"

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, tls: ServerTls | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.tls = tls
        self.port: int | None = None
        self._web: web.AppRunner | None = None

    def routes(self) -> dict[str, Handler]:
        """Path -> handler of every GET endpoint."""
        raise NotImplementedError

    def app(self) -> web.Application:
        app = web.Application()
        for path, handler in self.routes().items():
            app.router.add_get(path, handler)
        return app

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (a free one when asked for 0)."""
        context = self.tls.context() if self.tls is not None else None
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.requested_port, ssl_context=context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._web = runner
        self.port = int(runner.addresses[0][1])
        log.info("serving %s on %s://%s:%d", self.serving, "https" if context else "http", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._web is not None:
            web_runner, self._web = self._web, None
            await web_runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def metrics_response(request: web.Request, registry: CollectorRegistry) -> web.Response:
    """``registry`` in the format the scraper asks for (Prometheus text, or OpenMetrics), secrets masked."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = redact(encoder(registry).decode())  # a secret in a name or label value: ***
    return web.Response(body=body.encode(), headers={"Content-Type": content_type})


class OpsServer(EndpointServer):
    """The /metrics, /healthz, /readyz server of one runner; an async context manager.

    >>> async with OpsServer(runner, port=0) as server:
    ...     print(server.port)
    """

    def __init__(self, runner: Runner, host: str = "127.0.0.1", port: int = 8080,
                 tls: ServerTls | None = None) -> None:
        super().__init__(host, port, tls)
        self.runner = runner
        self.metrics = PipelineMetrics.for_runner(runner)

    def routes(self) -> dict[str, Handler]:
        return {"/metrics": self.handle_metrics, "/healthz": self.handle_healthz, "/readyz": self.handle_readyz}

    # -- endpoints ---------------------------------------------------------
    async def handle_metrics(self, request: web.Request) -> web.Response:
        return metrics_response(request, self.metrics.registry)

    async def handle_healthz(self, request: web.Request) -> web.Response:
        if not self.runner.healthy:  # stalled, with settings.stall_unhealthy
            return _json(503, {"status": "stalled", "state": self.runner.state, "reason": self._stall_reason()})
        return _json(200, {"status": "ok", "state": self.runner.state})

    def _stall_reason(self) -> str:
        stall = self.runner.stall
        seconds = stall.seconds_without_progress() if stall is not None else 0.0
        return f"stalled: no progress for {seconds:.0f}s while events wait"

    async def handle_readyz(self, request: web.Request) -> web.Response:
        runner = self.runner
        if runner.ready:
            return _json(200, {"ready": True, "state": runner.state})
        waiting = [c.name for c in runner.pipeline.stages() if not c.ready]
        restoring = [t.name for t in runner.pipeline.transforms
                     if any(not r.done for r in t.state_restores())]
        connecting = [n for n in waiting if n not in restoring]
        if runner.state != "running":
            reason = f"pipeline is {runner.state}"
        elif runner.stalled:
            reason = self._stall_reason()
        else:
            reason = "; ".join([*(["restoring state: " + ", ".join(restoring)] if restoring else []),
                                *(["not connected: " + ", ".join(connecting)] if connecting else [])])
        return _json(503, {"ready": False, "state": runner.state, "reason": reason, "not_ready": waiting,
                           "restoring": restoring})


async def serve(runner: Runner, host: str = "127.0.0.1", port: int = 8080, *,
                tls: ServerTls | None = None, on_bound: Callable[[int], None] | None = None) -> None:
    """Serve /metrics, /healthz and /readyz for ``runner`` until cancelled.

    A runner watcher: ``Runner(pipeline, watchers=[functools.partial(serve, port=9000)])``.
    ``on_bound`` receives the bound port (useful with ``port=0``); ``tls`` makes it HTTPS.
    """
    server = OpsServer(runner, host, port, tls)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot serve /metrics on %s:%d: %s", host, port, exc)
        raise
    try:
        if on_bound is not None:
            assert server.port is not None
            on_bound(server.port)
        await asyncio.Event().wait()  # until the runner cancels its watchers
    finally:
        await server.stop()
