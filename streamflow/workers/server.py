"""`WorkersServer`: the one ops server of `streamflow run --workers N`, answering for all the workers.

Each worker serves its own ``/metrics``, ``/readyz`` and ``/healthz`` on a
free port of 127.0.0.1 (plain HTTP, never exposed); this server, on
``settings.http`` (or ``--http-port``), asks them when it is asked:

* ``/metrics`` — the workers' metrics as one (`MetricsAggregate`: counters and
  histograms summed, gauges per ``worker`` label), plus the supervisor's own:
  ``streamflow_workers``, ``streamflow_worker_up{worker}`` and
  ``streamflow_worker_restarts_total{worker}``.
* ``/readyz`` — 200 when every worker is ready (its own ``/readyz`` says 200);
  else 503 with the reason of each worker that is not.
* ``/healthz`` — 200 while the supervisor answers, with each worker's state,
  pid and restarts; 503 if a running worker's own ``/healthz`` says 503 (stalled,
  with ``settings.stall_unhealthy``), so a liveness probe still sees it.

Scraping the workers (rather than prometheus-client's multiprocess mode) keeps
the metrics a worker computes at scrape time — stage counters, channel depths,
consumer lag — which multiprocess mode cannot carry: it only shares the values
of prometheus-client's own metric objects through files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..core.settings import HttpSettings
from ..observability.server import EndpointServer, Handler, metrics_response
from .aggregate import MetricsAggregate, parse
from .slot import WorkerSlot

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("streamflow.workers")

#: Seconds a worker may take to answer one scrape or probe.
SCRAPE_TIMEOUT = 5.0


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class WorkersServer(EndpointServer):
    """The supervisor's /metrics, /readyz and /healthz (see the module's docstring)."""

    serving = "/metrics (summed over the workers), /healthz, /readyz"

    def __init__(self, supervisor: Supervisor, http: HttpSettings) -> None:
        super().__init__(http.host, http.port, http.tls)
        self.supervisor = supervisor
        self.aggregate = MetricsAggregate()
        supervisor.on_exit.append(lambda slot: self.aggregate.retire(slot.index))
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> dict[str, Handler]:
        return {"/metrics": self.handle_metrics, "/healthz": self.handle_healthz, "/readyz": self.handle_readyz}

    async def start(self) -> int:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT))
        try:
            return await super().start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await super().stop()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def ask(self, slot: WorkerSlot, path: str) -> tuple[int, str] | None:
        """``(status, body)`` of GET ``path`` on the worker of ``slot``; None if it has no server (yet) or
        does not answer."""
        if slot.port is None or self._session is None:
            return None
        try:
            async with self._session.get(f"http://127.0.0.1:{slot.port}{path}") as response:
                return response.status, await response.text()
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.debug("worker %d: GET %s failed: %s", slot.index, path, exc)
            return None

    async def ask_all(self, path: str) -> list[tuple[WorkerSlot, int, tuple[int, str] | None]]:
        """Every slot, the generation asked, and its answer to ``path``."""
        slots = self.supervisor.slots
        generations = [slot.generation for slot in slots]
        answers = await asyncio.gather(*(self.ask(slot, path) for slot in slots))
        return list(zip(slots, generations, answers, strict=True))

    # -- endpoints -----------------------------------------------------------------------
    async def handle_metrics(self, request: web.Request) -> web.Response:
        gauges: dict[int, list[Metric]] = {}
        for slot, generation, answer in await self.ask_all("/metrics"):
            if answer is None or answer[0] != 200 or slot.generation != generation or slot.pid is None:
                continue  # not up, or ended meanwhile: its last counters stand
            families = parse(answer[1])
            self.aggregate.update(slot.index, generation, families)
            gauges[slot.index] = families
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collected([*self.aggregate.collect(gauges), *self._own_metrics()]))
        return metrics_response(request, registry)

    def _own_metrics(self) -> Iterator[Metric]:
        slots = self.supervisor.slots
        workers = GaugeMetricFamily("streamflow_workers", "Worker processes this supervisor runs.")
        workers.add_metric([], len(slots))
        up = GaugeMetricFamily("streamflow_worker_up", "1 while the worker's process runs.", labels=["worker"])
        restarts = CounterMetricFamily("streamflow_worker_restarts", "Times a crashed worker was restarted.",
                                       labels=["worker"])
        for slot in slots:
            up.add_metric([str(slot.index)], 1 if slot.pid is not None else 0)
            restarts.add_metric([str(slot.index)], slot.restarts)
        yield from (workers, up, restarts)

    async def handle_readyz(self, request: web.Request) -> web.Response:
        if self.supervisor.stopping:
            return _json(503, {"ready": False, "reason": "stopping the workers"})
        reasons: dict[str, str] = {}
        for slot, _, answer in await self.ask_all("/readyz"):
            if answer is None:
                state = "starting" if slot.state == "running" else slot.state
                reasons[str(slot.index)] = f"worker {slot.index}: {state}"
            elif answer[0] != 200:
                reasons[str(slot.index)] = f"worker {slot.index}: {_reason(answer[1])}"
        if not reasons:
            return _json(200, {"ready": True, "workers": len(self.supervisor.slots)})
        return _json(503, {"ready": False, "reason": "; ".join(reasons.values()), "not_ready": sorted(reasons)})

    async def handle_healthz(self, request: web.Request) -> web.Response:
        workers: dict[str, dict[str, Any]] = {}
        unhealthy: list[str] = []
        for slot, _, answer in await self.ask_all("/healthz"):
            workers[str(slot.index)] = {"state": slot.state, "pid": slot.pid, "restarts": slot.restarts}
            if answer is not None and answer[0] != 200:
                unhealthy.append(f"worker {slot.index}: {_reason(answer[1])}")
        if unhealthy:
            return _json(503, {"status": "unhealthy", "reason": "; ".join(unhealthy), "workers": workers})
        return _json(200, {"status": "ok", "workers": workers})


def _reason(body: str) -> str:
    """The ``reason`` of a worker's JSON answer (its whole text if it has none)."""
    try:
        return str(orjson.loads(body).get("reason", body))
    except (orjson.JSONDecodeError, AttributeError):
        return body


class _Collected:
    """A collector of metric families computed before it is asked (for one scrape)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics
