"""io-enrich: every event awaits a 5 ms call to a service; overlap is everything.

``streamflow`` runs the `enrich` transform in function mode with
``concurrency: 64``; ``bare`` is an asyncio loop keeping 64 calls in flight
with a semaphore; ``sync-reference`` makes the calls one after the other (on a
small N) to show what no concurrency gives (~200 events/s). The service is an
``asyncio.sleep``-backed coroutine (``--service http`` is not needed to show
the engine's overhead: the sleep is the I/O wait).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from . import data
from .harness import Stopwatch, Workload, tune_like_streamflow

#: Seconds one service call takes.
LATENCY = 0.005
CONCURRENCY = 64
#: Events of the sync reference (it runs at ~1/LATENCY events/s).
SYNC_N = 200


async def lookup(value: dict[str, Any]) -> dict[str, Any]:
    """The remote service: 5 ms, then a score for the event."""
    await asyncio.sleep(LATENCY)
    return {"score": value["id"] % 97}


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

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        n = self.n if variant != "sync-reference" else min(self.n, SYNC_N if not self.opts.smoke else 20)
        return {"n": n}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        got = data.Digest(**result.pop("digest"))
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
    with Stopwatch() as sw:
        for i in range(params["n"]):
            value = make_value(i)
            time.sleep(LATENCY)  # the same service, called synchronously
            value["score"] = i % 97
            b.add_records([value])
    return sw.result(params["n"], digest=b.digest().to_json())


async def run_bare(params: dict[str, Any]) -> dict[str, Any]:
    tune_like_streamflow()
    n = params["n"]
    b = data.DigestBuilder()
    sem = asyncio.Semaphore(CONCURRENCY)
    out: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()

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
    return sw.result(n, digest=b.digest().to_json())


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
    with Stopwatch() as sw:
        result = await Runner(p, handle_signals=False).run()
    if result.exit_code != 0:
        raise RuntimeError(f"pipeline failed: {result.summary()}")
    return sw.result(result.events_in, digest=b.digest().to_json())
