"""kafka-count: a count per key over 1M keyed events (100k keys) on 3 partitions, each updated count out.

The stateful workload. Event *i* has key ``k-<(i·7919) mod K>`` on partition
``key mod 3`` (K = 100,000: every key ten times, spread over the stream); for
each event the job adds one to its key's count and writes the key with the new
count (``b"3"``) to another topic. Every variant keeps the counts in its
framework's keyed state, partitioned like the input, with what that framework
writes for recovery:

* ``streamflow-memory`` / ``streamflow-disk``: ``map(count, state={"count": "value"})``
  with ``state_backend`` memory or disk (RocksDB), changelog topic in Kafka;
* ``quixstreams``: ``sdf.apply(count, stateful=True)``, RocksDB state and its changelog topic;
* ``faust``: a ``Table`` (``store="rocksdb://"``, which faust-streaming backs with
  rocksdict; ``SF_BENCH_FAUST_STORE=memory://`` for its in-memory table) with its
  changelog topic, one agent iterating the events; it runs on 5k events and 500
  keys (10 per key, as the others) because it processes ~200 events/s here;
* ``bytewax``: ``stateful_map`` keyed by the Kafka key: state in memory only
  (its recovery store is off; it writes no changelog and commits no offsets).

Throughput is measured as in kafka-enrich (first consumed message to the
broker's append time of the last output). The parent reads the output back:
exactly N records, and the multiset of (key, count) pairs must be each key
with the counts 1..N/K — so a count applied twice or lost shows. ``--variant
streamflow-memory-1Mkeys`` / ``streamflow-disk-1Mkeys`` run the same job over
1M events with 1M distinct keys: their peak RSS against the 100k-key runs is
what the state costs in memory.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any, ClassVar

from .harness import Workload, module_available
from .kafka_enrich import BATCH, PARTITIONS, Record, create_topic, write_once

#: Keys of the input (``*-1Mkeys``: as many keys as events).
KEYS = 100_000
PEER_MODULES = {"quixstreams": "quixstreams", "faust": "faust", "bytewax": "bytewax"}


def key_of(i: int, keys: int) -> int:
    return (i * 7919) % keys


def key_bytes(k: int) -> bytes:
    return b"k-%07d" % k


def expected_digest(n: int, keys: int) -> tuple[int, int]:
    """(records, checksum) of the right output: every key with the counts 1..n/keys (n a multiple of keys)."""
    crc = 0
    for k in range(keys):
        key = key_bytes(k)
        for c in range(1, n // keys + 1):
            crc = (crc + zlib.crc32(b"%d" % c, zlib.crc32(key))) & (2**64 - 1)
    return n, crc


class KafkaCount(Workload):
    name = "kafka-count"
    variants = ("streamflow-memory", "streamflow-disk", "quixstreams", "faust", "bytewax",
                "streamflow-memory-1Mkeys", "streamflow-disk-1Mkeys")
    extras = frozenset({"streamflow-memory-1Mkeys", "streamflow-disk-1Mkeys"})
    peers = frozenset({"quixstreams", "faust", "bytewax"})
    baselines = ("streamflow-memory",)
    default_n = 1_000_000
    smoke_n = 2000
    timeout = 900.0
    needs_kafka: ClassVar[bool] = True
    n_cap: ClassVar[dict[str, int]] = {"faust": 5_000}
    no_commit: ClassVar[dict[str, str]] = {"bytewax": "bytewax keeps positions in its own recovery store"}

    def unavailable(self, variant: str) -> str | None:
        if variant in PEER_MODULES:
            return module_available(PEER_MODULES[variant])
        if "disk" in variant:
            return module_available("rocksdict")
        return None

    def _shape(self, variant: str) -> tuple[int, int]:
        """(events, keys) of ``variant``'s input: 10 events per key, or one per key (``*-1Mkeys``)."""
        n = min(self.n, self.n_cap.get(variant, self.n))
        if variant.endswith("-1Mkeys"):
            return n, n
        return n, max(1, min(KEYS, n // 10))

    def prepare(self) -> None:
        assert self.opts.bootstrap, "kafka-count needs a broker"
        self.inputs: dict[tuple[int, int], tuple[str, dict[int, int]]] = {}
        for n, keys in {self._shape(v) for v in self.selected_variants() if not self.unavailable(v)}:
            topic = f"sf-bench-count-in-v1-{n}-{keys}"
            self.inputs[(n, keys)] = (topic, asyncio.run(ensure_keyed_input(self.opts.bootstrap, topic, n, keys)))

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        n, keys = self._shape(variant)
        topic, ends = self.inputs[(n, keys)]
        tag = f"{variant}-{round_no}-{uuid.uuid4().hex[:8]}"
        out = f"sf-bench-count-out-{tag}"
        asyncio.run(create_topic(self.opts.bootstrap, out))
        return {"n": n, "keys": keys, "bootstrap": self.opts.bootstrap, "input_topic": topic,
                "output_topic": out, "group": f"sf-bench-count-{tag}", "batch_size": BATCH,
                "backend": "disk" if "disk" in variant else "memory",
                "end_offsets": {str(p): o for p, o in ends.items()}}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        if result.get("unsupported"):
            return result["unsupported"]
        from .kafka_enrich import committed_offsets

        records, crc, last_ms = asyncio.run(read_counts(params))
        want = expected_digest(params["n"], params["keys"])
        if (records, crc) != want:
            return f"output has {records} records (checksum {crc}), expected {want[0]} ({want[1]})"
        if variant not in self.no_commit:
            committed = asyncio.run(committed_offsets(params["bootstrap"], params["group"], params["input_topic"]))
            if committed != {int(p): o for p, o in params["end_offsets"].items()}:
                return f"committed offsets {committed} != end of input {params['end_offsets']}"
        else:
            result["note"] = f"offsets not committed: {self.no_commit[variant]}"
        result["child_seconds"] = result["seconds"]
        result["seconds"] = max(1e-6, last_ms / 1000 - result["t_first"])
        result["cpu_us_per_event"] = round(result["cpu_seconds"] / params["n"] * 1e6, 2)
        return None

    def cleanup_run(self, params: dict[str, Any]) -> None:
        """The output topic and every topic the run created for its state (their names carry the group)."""
        try:
            asyncio.run(delete_topics_with(params["bootstrap"], (params["output_topic"], params["group"])))
        except Exception:  # noqa: BLE001 - best effort
            pass

    def summary(self, outcomes: list[Any]) -> list[str]:
        by = {o.variant: o for o in outcomes if o.ok}
        lines = []
        for v, o in by.items():
            cpu = [r.extra.get("cpu_seconds", 0) / r.events * 1e6 for r in o.runs if r.events]
            lines.append(f"kafka-count/{v}: process CPU per event {sorted(cpu)[len(cpu) // 2]:.1f} µs")
        best = max((by[v].median for v in self.peers if v in by), default=0.0)
        for v in ("streamflow-memory", "streamflow-disk"):
            if v in by and best:
                lines.append(f"kafka-count: {v} / best peer = {by[v].median / best:.2f}")
        for backend in ("memory", "disk"):
            small, large = by.get(f"streamflow-{backend}"), by.get(f"streamflow-{backend}-1Mkeys")
            if small and large:
                lines.append(f"kafka-count: peak RSS {backend} {small.peak_rss_mib:.0f} MiB ({small.n // 10:,} keys) "
                             f"vs {large.peak_rss_mib:.0f} MiB ({large.n:,} keys)")
        return lines

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        if variant in PEER_MODULES:
            from .harness import tune_like_streamflow
            from .peers import counting

            tune_like_streamflow()
            return getattr(counting, f"run_{variant}")(params)
        import uvloop

        from .kafka_enrich import run_streamflow

        return uvloop.run(run_streamflow(params, count_pipeline(params)))


def count(value: Any, state: Any) -> int:
    """The streamflow job: one more for the event's key; the new count is the output value."""
    n: int = state.count.get(0) + 1
    state.count.set(n)
    return n


def count_pipeline(params: dict[str, Any]) -> Any:
    import streamflow.connectors.kafka  # noqa: F401  (registers the kafka source and sink)
    from streamflow import Pipeline

    return (Pipeline(params["group"])  # the changelog topic is named after the pipeline: one per run
            .source("kafka", bootstrap_servers=params["bootstrap"], topics=[params["input_topic"]],
                    group_id=params["group"], batch_size=params["batch_size"])
            .map(count, state={"count": "value"}, state_backend=params["backend"])
            .sink("kafka", bootstrap_servers=params["bootstrap"], topic=params["output_topic"]))


async def ensure_keyed_input(bootstrap: str, topic: str, n: int, keys: int) -> dict[int, int]:
    """The input topic: event i (``{"id": i}``) keyed ``k-<key_of(i)>`` on partition key % 3; made once."""
    def records() -> Iterator[Record]:
        for i in range(n):
            k = key_of(i, keys)
            yield k % PARTITIONS, key_bytes(k), b'{"id":%d}' % i, []

    return await write_once(bootstrap, topic, n, records)


async def read_counts(params: dict[str, Any]) -> tuple[int, int, int]:
    """(records, checksum of the (key, count) pairs, last broker append time in ms) of the output topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=params["bootstrap"], enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    await consumer.start()
    records, crc, last = 0, 0, 0
    try:
        tps = [TopicPartition(params["output_topic"], p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            for tp, got in (await consumer.getmany(timeout_ms=1000, max_records=50_000)).items():
                for r in got:
                    crc = (crc + zlib.crc32(r.value or b"", zlib.crc32(r.key or b""))) & (2**64 - 1)
                    last = max(last, r.timestamp)
                records += len(got)
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    return records, crc, last


async def delete_topics_with(bootstrap: str, parts: tuple[str, ...]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if any(p in t for p in parts)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
