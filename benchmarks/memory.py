"""memory: 1M and 5M events through a sink slower than the source; peak RSS must not grow with N.

The generator source makes JSON events, `parse` decodes them and a sink that
sleeps per batch (keeping nothing but a count and an id sum) consumes them,
so the channels fill and backpressure holds the source (contract 1). The
child reports how long the source was blocked to show the sink was the
bottleneck.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .harness import Stopwatch, Workload

#: Seconds the sink sleeps per batch of 1000 (generator + parse make a batch in ~9 ms here).
SINK_DELAY = 0.012
#: How many times more events the large variant runs.
FACTOR = 5


class Memory(Workload):
    name = "memory"
    variants = ("1M", "5M")
    baselines = ("1M",)
    streamflow_variants = frozenset({"1M", "5M"})
    default_n = 1_000_000
    smoke_n = 2000
    timeout = 600.0

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        n = self.n * (FACTOR if variant == "5M" else 1)
        # smoke runs are tiny: small batches so the channels still fill up
        return {"n": n, "delay": SINK_DELAY, "batch_size": 50 if self.opts.smoke else 1000}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        n = params["n"]
        if result["seen"] != n or result["id_sum"] != n * (n - 1) // 2:
            return f"sink saw {result['seen']} events (id sum {result['id_sum']}), expected {n}"
        if result["blocked_seconds"] <= 0:
            return "the source was never blocked: the sink is not the bottleneck"
        result["note"] = f"source blocked {result['blocked_seconds']:.1f}s by backpressure"
        return None

    def summary(self, outcomes: list[Any]) -> list[str]:
        by = {o.variant: o for o in outcomes if o.ok}
        if "1M" in by and "5M" in by:
            small, large = by["1M"].peak_rss_mib, by["5M"].peak_rss_mib
            ratio = large / small if small else 0.0
            return [f"memory: peak RSS {small:.0f} MiB ({by['1M'].n:,} events) vs {large:.0f} MiB "
                    f"({by['1M'].n * FACTOR:,} events) = {ratio:.2f}x "
                    f"(target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})"]
        return []

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        import streamflow.connectors.generator  # noqa: F401
        from streamflow import Pipeline
        from streamflow.core.batch import Batch
        from streamflow.core.runner import Runner
        from streamflow.core.stage import Sink
        from streamflow.core.tuning import new_event_loop

        delay = params["delay"]
        seen = [0, 0]

        class SlowSink(Sink):
            """Slower than the source; keeps a count and an id sum, never the events."""

            async def write(self, batch: Batch) -> None:
                await asyncio.sleep(delay)
                seen[0] += len(batch.messages)
                seen[1] += sum(m.value["id"] for m in batch.messages)

        p = (Pipeline("memory")
             .source("generator", count=params["n"], format="json", seed=7, batch_size=params["batch_size"],
                     template={"id": {"seq": True}, "user": {"choice": ["ann", "bob", "cy", "dee"]},
                               "amount": {"float": [1, 100]}, "page": {"string": 12}})
             .parse("json")
             .sink(SlowSink()))
        runner = Runner(p, handle_signals=False)
        with Stopwatch() as sw, asyncio.Runner(loop_factory=new_event_loop) as loop:
            result = loop.run(runner.run())
        if result.exit_code != 0:
            raise RuntimeError(f"pipeline failed: {result.summary()}")
        blocked = runner.channels[0].blocked_seconds
        return sw.result(result.events_in, seen=seen[0], id_sum=seen[1], blocked_seconds=round(blocked, 3))
