"""Prometheus metrics of one running pipeline.

`PipelineMetrics` is two things at once:

* a prometheus-client ``Collector`` that reads the runner's plain counters
  (`StageStats`, `Channel` measurements, each source's `lag`, each stateful
  transform's `state_restores`) at scrape time, so the hot path never touches
  a metric object for them;
* a `RunnerHooks` observer feeding the two histograms the counters cannot
  give: per-stage batch latency and end-to-end latency.

Each runner gets its own `CollectorRegistry` (``metrics.registry``), never
the process-global one, so several pipelines (or tests) never collide.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..core.batch import Batch
from ..core.result import RunnerHooks
from ..core.stats import StageStats

if TYPE_CHECKING:
    from ..core.runner import Runner

#: Buckets of the per-batch stage latency (seconds): 50 µs … 10 s.
STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets of end-to-end latency and event age (seconds): 1 ms … 5 min.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 120.0, 300.0)

#: StageStats counter -> (metric name without ``_total``, help text).
STAGE_COUNTERS: dict[str, tuple[str, str]] = {
    "events_in": ("streamflow_events_in", "Events a stage received."),
    "events_out": ("streamflow_events_out", "Events a stage emitted (sources: read; sinks: durably written)."),
    "batches_in": ("streamflow_batches_in", "Batches a stage received."),
    "batches_out": ("streamflow_batches_out", "Batches a stage emitted (sinks: durably written)."),
    "errors": ("streamflow_errors", "Events a stage failed on, after retries, whatever the policy did."),
    "retries": ("streamflow_retries", "Retries: of failing events (retry policy) and of sink writes."),
    "skipped": ("streamflow_skipped", "Failed events dropped by a `skip` policy."),
    "dead_lettered": ("streamflow_dead_lettered", "Failed events sent to the dead-letter sink."),
    "filtered": ("streamflow_filtered", "Events a transform dropped on purpose (filters; blank payloads of "
                                        "a parse stage)."),
    "blank": ("streamflow_blank_frames", "Blank or whitespace-only frames (lines) a source or parse stage "
                                         "passed over: no event for the json and csv codecs."),
    "late": ("streamflow_late_events", "Events behind a window's watermark, sent to its `late` output."),
    "busy_seconds": ("streamflow_stage_busy_seconds", "Seconds a stage spent processing or writing."),
    "commits": ("streamflow_commits", "Checkpoints a source wrote (Kafka offset commits, file positions)."),
    "commit_errors": ("streamflow_commit_errors", "Checkpoint writes that failed (retried next interval)."),
}

STAGE_LABELS = ("pipeline", "stage", "kind")
CHANNEL_LABELS = ("pipeline", "channel")
RESTORE_LABELS = ("pipeline", "stage", "state", "partition")


def partition_labels(partition: Hashable) -> tuple[str, str]:
    """(topic, partition) label values of a source partition key.

    Kafka keys are ``TopicPartition``-like (``.topic``/``.partition``) or
    ``(topic, partition)`` tuples; any other key is a bare partition.
    """
    topic = getattr(partition, "topic", None)
    number = getattr(partition, "partition", None)
    if topic is not None and number is not None:
        return str(topic), str(number)
    if isinstance(partition, tuple) and len(partition) == 2:
        return str(partition[0]), str(partition[1])
    return "", str(partition)


class PipelineMetrics(RunnerHooks, Collector):
    """The metrics of one `Runner`: a scrape-time collector plus latency histograms.

    >>> metrics = PipelineMetrics.for_runner(runner)   # registers itself as a hook
    >>> prometheus_client.generate_latest(metrics.registry)
    """

    def __init__(self, runner: Runner, registry: CollectorRegistry | None = None) -> None:
        self.runner = runner
        self.pipeline = runner.pipeline.name
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self.stage_seconds = Histogram(
            "streamflow_stage_batch_seconds",
            "Seconds a transform took to process one batch, or a sink to durably write it.",
            STAGE_LABELS, buckets=STAGE_BUCKETS, registry=self.registry)
        self.end_to_end = Histogram(
            "streamflow_end_to_end_seconds",
            "Seconds from a batch leaving its source to being durably written by a sink.",
            ("pipeline", "sink"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.event_age = Histogram(
            "streamflow_event_age_seconds",
            "Age of a batch's first event (now - its timestamp) when a sink has written it.",
            ("pipeline", "sink"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self._stage_children: dict[str, Any] = {}
        self._sink_children: dict[str, tuple[Any, Any]] = {}
        self.registry.register(self)
        # process_* (CPU, memory, open files), python_info and python_gc_* series
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    @classmethod
    def for_runner(cls, runner: Runner) -> PipelineMetrics:
        """The runner's metrics, created and added to ``runner.hooks`` on first use."""
        for hook in runner.hooks:
            if isinstance(hook, cls):
                return hook
        metrics = cls(runner)
        runner.hooks.append(metrics)
        return metrics

    # -- hooks (hot path: once per batch) ----------------------------------
    def _stage_child(self, stats: StageStats) -> Any:
        child = self._stage_children.get(stats.name)
        if child is None:
            child = self._stage_children[stats.name] = self.stage_seconds.labels(
                self.pipeline, stats.name, stats.kind)
        return child

    def batch_processed(self, stats: StageStats, batch: Batch, seconds: float) -> None:
        self._stage_child(stats).observe(seconds)

    def batch_written(self, stats: StageStats, batch: Batch, seconds: float) -> None:
        self._stage_child(stats).observe(seconds)
        if stats.kind != "sink":
            return
        children = self._sink_children.get(stats.name)
        if children is None:
            children = self._sink_children[stats.name] = (
                self.end_to_end.labels(self.pipeline, stats.name),
                self.event_age.labels(self.pipeline, stats.name))
        if batch.created:
            children[0].observe(max(0.0, time.monotonic() - batch.created))
        if batch.messages:
            stamp = batch.messages[0].timestamp
            if stamp is not None:
                children[1].observe(max(0.0, time.time() - stamp))

    # -- collector (scrape time) ------------------------------------------
    def collect(self) -> Iterator[Metric]:
        runner = self.runner
        pipeline = self.pipeline
        yield from self._collect_stages(runner, pipeline)
        yield from self._collect_channels(runner, pipeline)
        yield from self._collect_sources(runner, pipeline)
        yield from self._collect_restores(runner, pipeline)
        up = GaugeMetricFamily("streamflow_up", "1 while the pipeline process serves metrics.",
                               labels=["pipeline"])
        up.add_metric([pipeline], 1)
        yield up
        yield from self._collect_health(runner, pipeline)

    @staticmethod
    def _collect_health(runner: Runner, pipeline: str) -> Iterator[Metric]:
        """Readiness, the run's state, the stall detector and the build."""
        labels = ["pipeline"]
        ready = GaugeMetricFamily("streamflow_ready", "1 when running, not stalled, with every source and sink "
                                                      "connected (as /readyz).", labels=labels)
        ready.add_metric([pipeline], 1 if runner.ready else 0)
        state = GaugeMetricFamily("streamflow_state", "1 for the run's current state (starting, running, "
                                                      "draining, stopped).", labels=[*labels, "state"])
        state.add_metric([pipeline, runner.state], 1)
        stalled = GaugeMetricFamily("streamflow_stalled", "1 while no stage made progress for stall_timeout "
                                                          "with events waiting.", labels=labels)
        stalls = CounterMetricFamily("streamflow_stalls", "Times the pipeline stalled.", labels=labels)
        idle = GaugeMetricFamily("streamflow_seconds_without_progress",
                                 "Seconds since a stage last made progress or nothing waited.", labels=labels)
        detector = runner.stall
        stalled.add_metric([pipeline], 1 if runner.stalled else 0)
        stalls.add_metric([pipeline], detector.stalls if detector is not None else 0)
        idle.add_metric([pipeline], detector.seconds_without_progress() if detector is not None else 0.0)
        build = GaugeMetricFamily("streamflow_build_info", "1; the streamflow and Python versions as labels.",
                                  labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], 1)
        yield from (ready, state, stalled, stalls, idle, build)

    @staticmethod
    def _collect_stages(runner: Runner, pipeline: str) -> Iterator[Metric]:
        stats = list(runner.stats.values())
        for attr, (name, doc) in STAGE_COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=STAGE_LABELS)
            for s in stats:
                value = getattr(s, attr, None)
                if value is not None:
                    family.add_metric([pipeline, s.name, s.kind], value)
            yield family

    @staticmethod
    def _collect_channels(runner: Runner, pipeline: str) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "depth_batches": GaugeMetricFamily("streamflow_channel_depth_batches",
                                               "Batches queued in a channel.", labels=CHANNEL_LABELS),
            "depth_events": GaugeMetricFamily("streamflow_channel_depth_events",
                                              "Events queued in a channel.", labels=CHANNEL_LABELS),
            "capacity_batches": GaugeMetricFamily("streamflow_channel_capacity_batches",
                                                  "Batches a channel holds before put() waits.",
                                                  labels=CHANNEL_LABELS),
            "capacity_events": GaugeMetricFamily("streamflow_channel_capacity_events",
                                                 "Events a channel holds before put() waits.",
                                                 labels=CHANNEL_LABELS),
            "depth_bytes": GaugeMetricFamily("streamflow_channel_depth_bytes",
                                             "Bytes (raw size of the events) queued in a channel.",
                                             labels=CHANNEL_LABELS),
            "capacity_bytes": GaugeMetricFamily("streamflow_channel_capacity_bytes",
                                                "Bytes a channel holds before put() waits (one larger batch "
                                                "passes alone).", labels=CHANNEL_LABELS),
            "blocked": CounterMetricFamily("streamflow_channel_blocked_seconds",
                                           "Seconds producers waited on a full channel (backpressure).",
                                           labels=CHANNEL_LABELS),
            "through": CounterMetricFamily("streamflow_channel_batches",
                                           "Batches that went through a channel.", labels=CHANNEL_LABELS),
        }
        for ch in runner.channels:
            labels = [pipeline, ch.name]
            families["depth_batches"].add_metric(labels, ch.depth)
            families["depth_events"].add_metric(labels, ch.events)
            families["capacity_batches"].add_metric(labels, ch.max_batches)
            families["capacity_events"].add_metric(labels, ch.max_events)
            families["depth_bytes"].add_metric(labels, ch.bytes)
            families["capacity_bytes"].add_metric(labels, ch.max_bytes)
            families["blocked"].add_metric(labels, ch.blocked_seconds)
            families["through"].add_metric(labels, ch.batches_through)
        yield from families.values()

    @staticmethod
    def _collect_sources(runner: Runner, pipeline: str) -> Iterator[Metric]:
        lag = GaugeMetricFamily("streamflow_consumer_lag",
                                "Events waiting upstream of a source per partition (Kafka: end offset - position).",
                                labels=["pipeline", "source", "topic", "partition"])
        pending = GaugeMetricFamily("streamflow_source_pending_batches",
                                    "Batches read from a source and not yet acknowledged (not committable yet).",
                                    labels=["pipeline", "source"])
        http = CounterMetricFamily("streamflow_http_responses",
                                   "Answers of an HTTP source by status code (refused connections: 503).",
                                   labels=["pipeline", "source", "code"])
        for src in runner.pipeline.sources:
            pending.add_metric([pipeline, src.name], src.tracker.pending())
            for code, count in sorted(getattr(src, "responses", {}).items()):
                http.add_metric([pipeline, src.name, code], count)
            try:
                lags = src.lag()
            except Exception:  # noqa: BLE001 - a scrape must not fail because a client is mid-rebalance
                continue
            for partition, value in lags.items():
                topic, number = partition_labels(partition)
                lag.add_metric([pipeline, src.name, topic, number], value)
        yield lag
        yield pending
        yield http

    @staticmethod
    def _collect_restores(runner: Runner, pipeline: str) -> Iterator[Metric]:
        remaining = GaugeMetricFamily(
            "streamflow_state_restore_remaining_records",
            "Changelog records a state store still has to restore (0 once restored; /readyz is 503 until then).",
            labels=RESTORE_LABELS)
        restored = CounterMetricFamily(
            "streamflow_state_restored_records",
            "Changelog records restored into a state store since its input partition was assigned.",
            labels=RESTORE_LABELS)
        for stage in runner.pipeline.transforms:
            for progress in stage.state_restores():
                labels = [pipeline, stage.name, progress.state, str(progress.partition)]
                remaining.add_metric(labels, progress.remaining)
                restored.add_metric(labels, progress.records)
        yield remaining
        yield restored
