"""io-enrich: every event awaits a 5 ms call to a service; overlap is everything.

``streamflow`` runs the `enrich` transform in function mode with
``concurrency: 64``; ``bare`` is an asyncio loop keeping 64 calls in flight
with a semaphore; ``sync-reference`` makes the calls one after the other (on a
small N) to show what no concurrency gives (~200 events/s). The service is a
TCP server in its own process that answers each call after 5 ms
(`benchmarks/service.py`); every run reports the latency its calls really had.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from . import data
from .harness import Stopwatch, Workload, tune_like_streamflow
from .service import ServiceClient, ServiceProcess, call_blocking

#: Seconds one service call takes.
LATENCY = 0.005
CONCURRENCY = 64
#: Events of the sync reference (it runs at ~1/LATENCY events/s).
SYNC_N = 200


#: This process's connection to the service (each run is its own process).
CLIENT = ServiceClient()


async def lookup(value: dict[str, Any]) -> dict[str, Any]:
    """The remote call: the service answers the event's score after 5 ms."""
    return {"score": await CLIENT.call(value["id"])}


def make_value(i: int) -> dict[str, Any]:
    return {"id": i, "kind": "click"}


def expected_digest(n: int) -> data.Digest:
    b = data.DigestBuilder()
    b.add_records({**make_value(i), "score": i % 97} for i in range(n))
    return b.digest()


class IoEnrich(Workload):
    name = "io-enrich"
    variants = ("bare", "streamflow", "sync-reference")
    baselines = ("bare",)
    default_n = 100_000
    smoke_n = 2000
    timeout = 300.0

    def prepare(self) -> None:
        self.service = ServiceProcess(LATENCY)

    def close(self) -> None:
        self.service.stop()

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        n = self.n if variant != "sync-reference" else min(self.n, SYNC_N if not self.opts.smoke else 20)
        return {"n": n, "port": self.service.port}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        got = data.Digest(**result.pop("digest"))
        if result.get("service_ms"):
            result["note"] = f"service call {result['service_ms']:.2f} ms on average"
        return got.mismatch(expected_digest(params["n"]))

    def summary(self, outcomes: list[Any]) -> list[str]:
        by = {o.variant: o for o in outcomes if o.ok}
        lines = []
        ceiling = CONCURRENCY / LATENCY
        if "streamflow" in by:
            sf = by["streamflow"].median
            lines.append(f"io-enrich: streamflow {sf:,.0f} events/s = {sf / ceiling:.0%} of the "
                         f"{ceiling:,.0f}/s ceiling (target >= 10,240: {'met' if sf >= 10_240 else 'NOT met'})")
        return lines

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        if variant == "sync-reference":
            return run_sync(params)
        import uvloop

        return uvloop.run({"bare": run_bare, "streamflow": run_streamflow}[variant](params))


def run_sync(params: dict[str, Any]) -> dict[str, Any]:
    b = data.DigestBuilder()
    with socket.create_connection(("127.0.0.1", params["port"])) as sock, Stopwatch() as sw:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(params["n"]):
            value = make_value(i)
            value["score"] = call_blocking(sock, i)  # the same service, called synchronously
            b.add_records([value])
    return sw.result(params["n"], digest=b.digest().to_json())


async def run_bare(params: dict[str, Any]) -> dict[str, Any]:
    tune_like_streamflow()
    n = params["n"]
    b = data.DigestBuilder()
    sem = asyncio.Semaphore(CONCURRENCY)
    out: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    await CLIENT.connect(params["port"])

    async def one(value: dict[str, Any]) -> None:
        try:
            value.update(await lookup(value))
            out.append(value)
            if len(out) >= 1000:
                b.add_records(out)
                out.clear()
        finally:
            sem.release()

    with Stopwatch() as sw:
        for i in range(n):
            await sem.acquire()
            t = asyncio.create_task(one(make_value(i)))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        b.add_records(out)
    await CLIENT.close()
    return sw.result(n, digest=b.digest().to_json(), service_ms=round(CLIENT.mean_latency_ms(), 3))


async def run_streamflow(params: dict[str, Any]) -> dict[str, Any]:
    import streamflow.connectors.generator  # noqa: F401
    import streamflow.transforms.enrich  # noqa: F401
    from streamflow import Pipeline
    from streamflow.core.batch import Batch
    from streamflow.core.runner import Runner
    from streamflow.core.stage import Sink

    b = data.DigestBuilder()

    class DigestSink(Sink):
        """Keeps only the digest of what it is given."""

        async def write(self, batch: Batch) -> None:
            b.add_records([m.value for m in batch.messages])

    p = (Pipeline("io-enrich")
         .source("generator", count=params["n"], format="object", batch_size=params.get("batch_size", 1000),
                 template={"id": {"seq": True}, "kind": "click"})
         .transform("enrich", fn=lookup, concurrency=CONCURRENCY)
         .sink(DigestSink()))
    await CLIENT.connect(params["port"])
    with Stopwatch() as sw:
        result = await Runner(p, handle_signals=False).run()
    await CLIENT.close()
    if result.exit_code != 0:
        raise RuntimeError(f"pipeline failed: {result.summary()}")
    return sw.result(result.events_in, digest=b.digest().to_json(),
                     service_ms=round(CLIENT.mean_latency_ms(), 3))
