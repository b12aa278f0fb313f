"""tracing: events per CPU-second of a map + filter pipeline with tracing off and on (README "Tracing").

The pipeline reads N integers from the memory source in batches of B, maps,
filters and counts them. ``off`` is the default (no tracer); ``on`` traces
every batch at every stage with the SDK's batch processor and an exporter
that drops the spans, so the figure is streamflow's and the SDK's cost, not a
collector's. With ``--base DIR`` a third variant runs the ``off`` pipeline on
the streamflow package found in DIR (a checkout of another revision): the
cost of tracing being available but off. Each run is a fresh interpreter;
variants alternate for ``--rounds`` rounds; CPU time (`time.process_time`) of
the run is the measure, so a busy machine disturbs it less than wall time.

    python -m benchmarks.tracing [--events 300000] [--batch 1000 --batch 20] [--rounds 5] [--base DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(mode: str, events: int, batch: int) -> float:
    """Events per CPU-second of one run; checks the count that came out."""
    from streamflow import Pipeline
    from streamflow.connectors.memory import MemorySource
    from streamflow.core.batch import Batch
    from streamflow.core.runner import Runner
    from streamflow.core.stage import ComponentConfig, Sink

    class Count(Sink[ComponentConfig]):
        def setup(self) -> None:
            self.n = 0

        async def write(self, b: Batch) -> None:
            self.n += len(b.messages)

    sink = Count(name="count")
    pipeline = (Pipeline("bench").source(MemorySource(values=list(range(events)), batch_size=batch))
                .map(lambda v: v + 1, name="inc").filter(lambda v: v % 7 != 0, name="sevenths").sink(sink))
    tracer = None
    if mode == "on":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from streamflow.observability.tracing import PipelineTracer

        class Drop(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        tracer = PipelineTracer(provider, pipeline.name)
    runner = Runner(pipeline, handle_signals=False) if tracer is None else \
        Runner(pipeline, handle_signals=False, tracer=tracer)  # a base revision may know no tracer
    started = time.process_time()
    result = asyncio.run(runner.run())
    seconds = time.process_time() - started
    expected = sum(1 for v in range(events) if (v + 1) % 7 != 0)
    if result.exit_code != 0 or sink.n != expected:
        raise SystemExit(f"wrong output: {result.summary()}, {sink.n} of {expected}")
    return events / seconds


def run(variant: str, events: int, batch: int, base: str | None) -> float:
    """One fresh interpreter running `child` on this tree's streamflow, or on ``base``'s."""
    mode, tree = ("off", base or "") if variant == "base" else (variant, str(ROOT))
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--events", str(events), "--batch", str(batch)],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{variant} failed:\n{out.stderr}")
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", help="a directory holding another revision's streamflow package")
    parser.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = args.batch or [1000, 20]
    if args.child:
        print(f"{child(args.child, args.events, batches[0]):.0f}")
        return
    variants = ["off", "on"] + (["base"] if args.base else [])
    for batch in batches:
        samples: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                samples[v].append(run(v, args.events, batch, args.base))
        medians = {v: statistics.median(s) for v, s in samples.items()}
        line = ", ".join(f"{v} {m:,.0f} events/CPU-s" for v, m in medians.items())
        ratios = f"on/off {medians['on'] / medians['off']:.2f}"
        if "base" in medians:
            ratios += f", off/base {medians['off'] / medians['base']:.2f}"
        print(f"batches of {batch}: {line}; {ratios}")


if __name__ == "__main__":
    main()
