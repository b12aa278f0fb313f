"""`MetricsAggregate`: one Prometheus view of N worker processes, from their own ``/metrics`` texts.

* **Counters, histograms and summaries are summed** across workers, with the
  labels each worker gives them (no ``worker`` label): events in and out,
  errors, commits, latency buckets, CPU seconds — what the pipeline did, as one.
* **Gauges get a ``worker`` label** and are not summed: a gauge is the state of
  one process, and the right way to combine it depends on the gauge (channel
  depth adds up, ``streamflow_ready`` is a minimum, consumer lag per partition
  is whichever worker owns the partition). PromQL's ``sum``/``min``/``max by``
  does that where it is needed.

A summed counter must never go down, or every ``rate()`` over it jumps: when a
worker process ends (a crash, a restart), the counters it last reported are
kept (``retired``) and added to the sums from then on, so the totals carry on
from where they were while the new process counts from zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

#: Metric types whose samples only grow (within one process): summed across workers.
CUMULATIVE = frozenset({"counter", "histogram", "summary", "gaugehistogram"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> list[Metric]:
    """The metric families of one worker's ``/metrics`` text (Prometheus text format 0.0.4).

    The ``X_created`` gauges the text format writes beside a counter or histogram ``X`` are left out:
    a sum of start times means nothing, and in OpenMetrics they are part of ``X`` (a gauge of that
    name would clash with it).
    """
    families = list(text_string_to_metric_families(text))
    cumulative = {f.name for f in families if f.type in CUMULATIVE}
    return [f for f in families if not (f.name.endswith("_created") and f.name[:-len("_created")] in cumulative)]


def _key(sample: Sample) -> SampleKey:
    return sample.name, tuple(sorted(sample.labels.items()))


@dataclass
class _Family:
    """One metric family under construction: its header and its samples by name and labels."""

    name: str
    documentation: str
    type: str
    samples: dict[SampleKey, float] = field(default_factory=dict)

    def add(self, key: SampleKey, value: float) -> None:
        self.samples[key] = self.samples.get(key, 0.0) + value

    def metric(self) -> Metric:
        metric = Metric(self.name, self.documentation, self.type)
        for (name, labels), value in self.samples.items():
            metric.add_sample(name, dict(labels), value)
        return metric


class MetricsAggregate:
    """The summed view of the workers' metrics; `update` with each scrape, `collect` the result."""

    def __init__(self) -> None:
        #: worker -> (generation, cumulative families) of its last scrape
        self._last: dict[int, tuple[int, list[Metric]]] = {}
        #: the cumulative samples of worker processes that ended, by family name
        self._retired: dict[str, _Family] = {}

    def update(self, worker: int, generation: int, families: list[Metric]) -> None:
        """Remember what process ``generation`` of slot ``worker`` reported (its cumulative families)."""
        last = self._last.get(worker)
        if last is not None and last[0] != generation:
            self._retire(last[1])
        self._last[worker] = generation, [f for f in families if f.type in CUMULATIVE]

    def retire(self, worker: int) -> None:
        """The process of slot ``worker`` ended: its last counters carry on in the sums."""
        last = self._last.pop(worker, None)
        if last is not None:
            self._retire(last[1])

    def _retire(self, families: list[Metric]) -> None:
        for metric in families:
            family = self._retired.setdefault(metric.name, _Family(metric.name, metric.documentation, metric.type))
            for sample in metric.samples:
                family.add(_key(sample), sample.value)

    def collect(self, gauges: dict[int, list[Metric]]) -> Iterator[Metric]:
        """The summed cumulative families, then ``gauges`` (worker -> this scrape's families) per worker."""
        families: dict[str, _Family] = {}
        for name, retired in self._retired.items():
            families[name] = _Family(name, retired.documentation, retired.type, dict(retired.samples))
        for _, cumulative in self._last.values():
            _merge(families, cumulative, extra=())
        for worker, scraped in sorted(gauges.items()):
            _merge(families, (f for f in scraped if f.type not in CUMULATIVE), extra=(("worker", str(worker)),))
        for family in families.values():
            yield family.metric()


def _merge(families: dict[str, _Family], metrics: Iterable[Metric], extra: tuple[tuple[str, str], ...]) -> None:
    """Add ``metrics``' samples into ``families`` (summing equal name+labels), ``extra`` labels added."""
    for metric in metrics:
        family = families.get(metric.name)
        if family is None:
            family = families[metric.name] = _Family(metric.name, metric.documentation, metric.type)
        for sample in metric.samples:
            labels = tuple(sorted({**sample.labels, **dict(extra)}.items()))
            family.add((sample.name, labels), sample.value)
