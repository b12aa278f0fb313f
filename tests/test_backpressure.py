"""Contract 1: a fast source into a slow sink stays within the channel capacities."""

from __future__ import annotations

import resource
from typing import Any

from streamflow import Pipeline
from streamflow.core.batch import Batch
from streamflow.core.message import Message
from streamflow.core.runner import EXIT_OK
from streamflow.core.stage import ComponentConfig, Sink, Source, SourceConfig

BATCH = 100


class Firehose(Source[SourceConfig]):
    """Produces ``total`` events of ``size`` bytes as fast as it is asked."""

    def __init__(self, total: int, size: int) -> None:
        super().__init__()
        self.total, self.size, self.produced = total, size, 0

    async def read(self) -> Batch | None:
        if self.produced >= self.total:
            return None
        start = self.produced
        self.produced += BATCH
        msgs = [Message(bytes(self.size), offset=i) for i in range(start, self.produced)]
        return Batch(msgs, [self.tracker.track(0, self.produced)])


class SlowCountingSink(Sink[ComponentConfig]):
    """Sleeps per batch, keeps nothing, and records how far ahead the source ran."""

    def __init__(self, source: Firehose) -> None:
        super().__init__()
        self.source = source
        self.written = 0
        self.max_ahead = 0
        self.max_rss = 0

    async def write(self, batch: Batch) -> None:
        import asyncio

        await asyncio.sleep(0.002)
        self.written += len(batch)
        self.max_ahead = max(self.max_ahead, self.source.produced - self.written)
        self.max_rss = max(self.max_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run(total: int, size: int, **settings: Any) -> tuple[Firehose, SlowCountingSink, Any]:
    src = Firehose(total, size)
    sink = SlowCountingSink(src)
    p = Pipeline("bp", **settings).source(src).map(lambda v: v).sink(sink)
    return src, sink, p.run(handle_signals=False)


def test_source_never_runs_ahead_of_the_slow_sink_by_more_than_the_capacities() -> None:
    src, sink, result = run(20_000, 10, channel={"max_batches": 2, "max_events": 10_000})
    assert result.exit_code == EXIT_OK and sink.written == 20_000
    # three channels (source->map, map->sinks, ->sink) of 2 batches, plus one batch
    # in each of: the source's hand, the map, the sink
    bound = (3 * 2 + 3) * BATCH
    assert sink.max_ahead <= bound, (sink.max_ahead, bound)


def test_peak_memory_does_not_grow_with_stream_length() -> None:
    # 60k events of 10 KiB = 600 MiB of stream; the pipeline may only hold a few MiB of it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _, sink, result = run(60_000, 10_240, channel={"max_batches": 4, "max_events": 1000})
    assert result.exit_code == EXIT_OK and sink.written == 60_000
    grown_mib = (sink.max_rss - before) / 1024
    assert grown_mib < 100, f"RSS grew by {grown_mib:.0f} MiB"
