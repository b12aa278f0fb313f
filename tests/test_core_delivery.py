"""`Delivery`: a sink outage is retried on the one `Backoff` schedule and never drops or acks a batch early."""

from __future__ import annotations

import pytest

from streamflow.core.acks import AckTracker
from streamflow.core.backoff import Backoff
from streamflow.core.batch import Batch
from streamflow.core.channel import Channel
from streamflow.core.delivery import Delivery
from streamflow.core.errors import PipelineFailed
from streamflow.core.message import Message
from streamflow.core.result import RunnerHooks
from streamflow.core.stage import ComponentConfig, Sink
from streamflow.core.stats import StageStats

ASKED: list[int] = []


class RecordingBackoff(Backoff):
    """No waiting; remembers which retry numbers it was asked to wait for."""

    def delay(self, attempt: int) -> float:
        ASKED.append(attempt)
        return 0.0


class Flaky(Sink[ComponentConfig]):
    """Fails its first ``failures`` writes with ``error``, then keeps what it is given."""

    def setup(self) -> None:
        self.failures = 0
        self.error: Exception = ConnectionError("down")
        self.calls = 0
        self.values: list[object] = []
        self.flushed = False

    async def write(self, batch: Batch) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        self.values += [m.value for m in batch.messages]

    async def flush(self) -> None:
        self.flushed = True


class Counting(RunnerHooks):
    def __init__(self) -> None:
        self.written = 0

    def batch_written(self, stats: StageStats, batch: Batch, seconds: float) -> None:
        self.written += 1


@pytest.fixture(autouse=True)
def fresh() -> None:
    ASKED.clear()


async def feed(tracker: AckTracker, *batches: list[int]) -> Channel:
    ch = Channel("->sink", max_batches=len(batches))
    for i, values in enumerate(batches, 1):
        await ch.put(Batch([Message(v) for v in values], [tracker.track(0, i)]))
    ch.close()
    return ch


async def test_outage_is_retried_on_the_backoff_schedule_and_nothing_is_lost() -> None:
    tracker, sink, hook = AckTracker(), Flaky(), Counting()
    sink.failures = 3
    stats = StageStats("out", "sink")
    await Delivery(sink, stats, [hook], RecordingBackoff()).run(await feed(tracker, [1, 2], [3]))
    assert sink.values == [1, 2, 3] and sink.flushed
    assert ASKED == [1, 2, 3] and stats.retries == 3
    assert tracker.watermark(0) == 2  # both batches acked once written
    assert (stats.events_in, stats.events_out, stats.batches_out, hook.written) == (3, 3, 2, 2)


async def test_exhausted_attempts_fail_the_pipeline_without_acking() -> None:
    tracker, sink = AckTracker(), Flaky(name="flaky")
    sink.failures = 10
    stats = StageStats("out", "sink")
    with pytest.raises(PipelineFailed, match="'flaky' write failed 3 times: ConnectionError: down"):
        await Delivery(sink, stats, [], RecordingBackoff(max_attempts=3)).run(await feed(tracker, [1]))
    assert sink.calls == 3 and ASKED == [1, 2]
    assert tracker.watermark(0) is None


async def test_a_sink_that_says_retrying_cannot_help_fails_at_once() -> None:
    tracker, sink = AckTracker(), Flaky()
    sink.failures, sink.error = 1, PipelineFailed("reader went away")
    stats = StageStats("out", "sink")
    with pytest.raises(PipelineFailed, match="reader went away"):
        await Delivery(sink, stats, [], RecordingBackoff()).run(await feed(tracker, [1]))
    assert sink.calls == 1 and stats.retries == 0 and ASKED == []


async def test_a_sink_that_acks_itself_is_not_acked_by_the_delivery() -> None:
    class SelfAcking(Flaky):
        acks_itself = True

    tracker, sink = AckTracker(), SelfAcking()
    await Delivery(sink, StageStats("out", "sink"), [], RecordingBackoff()).run(await feed(tracker, [1]))
    assert sink.values == [1] and tracker.watermark(0) is None
