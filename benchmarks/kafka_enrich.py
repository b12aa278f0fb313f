"""kafka-enrich: keyed JSON events on a 3-partition topic -> filter -> enrich -> another topic, keyed by the
input key, offsets committed.

Every variant consumes the same input topic with a fresh consumer group and
writes a fresh output topic whose records get the broker's LogAppendTime.
Throughput is measured from the first message the variant consumed (its own
wall clock, reported as ``t_first``) to the broker append time of the last
output record — the same end point for every variant, peers included. The
parent then reads the output topic back and checks every record, and checks
the group's committed offsets reached the end of the input.

Variants: ``bare-aiokafka-send`` (one ``send()`` per event, futures awaited per
fetched batch), ``bare-aiokafka-batch`` (``create_batch``/``send_batch`` per
output partition, each key's partition hashed once: the ceiling of aiokafka), ``streamflow``, and the peers
``quixstreams``, ``faust`` and ``bytewax`` (benchmarks/peers/); on request
``streamflow-eos`` (``settings.delivery: exactly_once``, default commit interval)
beside ``streamflow`` for the cost of transactions, and ``quixstreams-eos`` (Quix's
``processing_guarantee="exactly-once"``) to compare with.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

import orjson

from . import data
from .harness import Stopwatch, Workload, module_available, tune_like_streamflow

PARTITIONS = 3
#: Records per poll of the bare loops and bytewax's source; streamflow runs with its defaults (the Kafka
#: source's ``batch_size`` is 2000, channels hold one batch), ``streamflow-b5000-ch8`` with the former
#: defaults (``batch_size: 5000``, ``channel.max_batches: 8``).
BATCH = 5000
#: Peer variant -> the module it needs.
PEER_MODULES = {"quixstreams": "quixstreams", "quixstreams-eos": "quixstreams", "faust": "faust", "bytewax": "bytewax"}


class KafkaEnrich(Workload):
    name = "kafka-enrich"
    variants = ("bare-aiokafka-send", "bare-aiokafka-batch", "streamflow", "streamflow-w2", "quixstreams", "faust",
                "bytewax", "streamflow-b5000-ch8", "streamflow-eos", "quixstreams-eos")
    extras = frozenset({"streamflow-b5000-ch8", "streamflow-eos", "quixstreams-eos"})
    peers = frozenset({"quixstreams", "faust", "bytewax", "quixstreams-eos"})
    baselines = ("bare-aiokafka-send", "bare-aiokafka-batch")
    default_n = 500_000
    timeout = 300.0
    needs_kafka: ClassVar[bool] = True
    #: Events a too-slow peer runs on (its own input topic of that size), to keep a run within minutes.
    n_cap: ClassVar[dict[str, int]] = {"faust": 30_000}
    #: Variants that do not commit consumer-group offsets (and why).
    no_commit: ClassVar[dict[str, str]] = {"bytewax": "bytewax keeps positions in its own recovery store"}

    def unavailable(self, variant: str) -> str | None:
        if variant in PEER_MODULES:
            return module_available(PEER_MODULES[variant])
        return None

    def prepare(self) -> None:
        assert self.opts.bootstrap, "kafka-enrich needs a broker"
        self.bootstrap = self.opts.bootstrap
        self.table = str(data.table_file())
        #: events -> (input topic, its end offsets)
        self.inputs: dict[int, tuple[str, dict[int, int]]] = {}
        for n in {self._n(v) for v in self.selected_variants() if not self.unavailable(v)}:
            topic = f"sf-bench-in-keyed-v{data.DATA_VERSION}-{n}"
            self.inputs[n] = (topic, asyncio.run(ensure_input(self.bootstrap, topic, n)))

    def _n(self, variant: str) -> int:
        return min(self.n, self.n_cap.get(variant, self.n))

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        n = self._n(variant)
        topic, ends = self.inputs[n]
        tag = f"{variant}-{round_no}-{uuid.uuid4().hex[:8]}"
        out = f"sf-bench-out-{tag}"
        asyncio.run(create_topic(self.bootstrap, out))
        return {"n": n, "bootstrap": self.bootstrap, "input_topic": topic, "output_topic": out,
                "group": f"sf-bench-{tag}", "table": self.table,
                "end_offsets": {str(p): o for p, o in ends.items()},
                "batch_size": _batch_size(variant),
                "channel_batches": 8 if variant == "streamflow-b5000-ch8" else None,
                "delivery": "exactly_once" if variant.endswith("-eos") else "at_least_once"}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        if result.get("unsupported"):
            return result["unsupported"]
        digest, (first_append_ms, last_append_ms), committed, misplaced = asyncio.run(read_output(params, params["n"]))
        if result.get("t_first") is None:  # a variant timed from its first output (`run_workers`)
            result["t_first"] = first_append_ms / 1000
        error = digest.mismatch(data.expected_enrich_digest(params["n"]))
        if error:
            return error
        if misplaced:
            return f"{misplaced} output records without the input's key or off their key's partition"
        if variant not in self.no_commit:
            want = {int(p): o for p, o in params["end_offsets"].items()}
            if committed != want:
                return f"committed offsets {committed} != end of input {want}"
        else:
            result["note"] = f"offsets not committed: {self.no_commit[variant]}"
        # end point: the broker's append time of the last output record (the same for every variant)
        result["t_last_append"] = last_append_ms / 1000
        result["child_seconds"] = result["seconds"]
        result["seconds"] = max(1e-6, last_append_ms / 1000 - result["t_first"])
        return None

    def cleanup_run(self, params: dict[str, Any]) -> None:
        try:
            asyncio.run(delete_topic(params["bootstrap"], params["output_topic"]))
        except Exception:  # noqa: BLE001 - best effort
            pass

    def summary(self, outcomes: list[Any]) -> list[str]:
        by = {o.variant: o for o in outcomes if o.ok}
        lines = []
        bare, sf = by.get("bare-aiokafka-batch"), by.get("streamflow")
        if bare is not None and sf is not None and bare.median and bare.cpu_median:
            rate, cpu = sf.median / bare.median, sf.cpu_median / bare.cpu_median
            lines.append(f"kafka-enrich: streamflow (defaults) / bare keyed batch loop = {rate:.2f}x events/s "
                         f"(target >= 0.90: {'met' if rate >= 0.9 else 'NOT met'}), {cpu:.2f}x events per "
                         f"CPU-second (target >= 0.95: {'met' if cpu >= 0.95 else 'NOT met'})")
        if sf is not None:
            peers = {v: by[v].median for v in self.peers if v in by}
            if peers:
                best = max(peers, key=peers.__getitem__)
                lines.append(f"kafka-enrich: streamflow / best peer ({best}) = {sf.median / peers[best]:.2f} "
                             f"(target > 1: {'met' if sf.median > peers[best] else 'NOT met'})")
        if sf is not None and "streamflow-eos" in by:
            cost = 1 - by["streamflow-eos"].median / sf.median
            lines.append(f"kafka-enrich: exactly_once costs {cost:.0%} of at_least_once's throughput "
                         f"(target <= 15%: {'met' if cost <= 0.15 else 'NOT met'})")
        quix, quix_eos = by.get("quixstreams"), by.get("quixstreams-eos")
        if quix is not None and quix_eos is not None and quix.median:
            lines.append(f"kafka-enrich: quixstreams' exactly-once costs {1 - quix_eos.median / quix.median:.0%} of "
                         "its at-least-once throughput")
        if sf is not None and "streamflow-eos" in by and quix_eos is not None and quix_eos.median:
            lines.append(f"kafka-enrich: exactly-once, streamflow / quixstreams = "
                         f"{by['streamflow-eos'].median / quix_eos.median:.2f}x events/s")
        return lines

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        if variant in PEER_MODULES:
            from .peers import run_peer

            return run_peer(variant, params)
        import uvloop

        if variant == "streamflow-w2":
            return run_workers(params, 2)
        if variant.startswith("streamflow"):
            variant = "streamflow"
        fn = {"bare-aiokafka-send": bare_send, "bare-aiokafka-batch": bare_batch,
              "streamflow": run_streamflow}[variant]
        return uvloop.run(fn(params))


def _batch_size(variant: str) -> int | None:
    """Records per batch a variant is given: streamflow's own default (None) unless the variant says."""
    if variant == "streamflow-b5000-ch8":
        return 5000
    return None if variant.startswith("streamflow") else BATCH


# -- topics ------------------------------------------------------------------------------
async def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    """A topic whose records carry the broker's append time."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1,
                                            topic_configs={"message.timestamp.type": "LogAppendTime"})])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        await consumer.stop()


async def ensure_input(bootstrap: str, topic: str, n: int) -> dict[int, int]:
    """The input topic with events 0..n-1, keyed by user and partitioned by key as a Kafka producer
    does (murmur2); produced once per broker."""
    from aiokafka.partitioner import DefaultPartitioner

    dumps, make, key_of, parts = orjson.dumps, data.make_event, data.event_key, list(range(PARTITIONS))
    part_of = KeyPartitions(DefaultPartitioner(), parts)
    return await write_once(bootstrap, topic, n,
                            lambda: ((part_of(key_of(i)), key_of(i), dumps(make(i)), []) for i in range(n)))


class KeyPartitions(dict[bytes, int]):
    """key -> partition as ``partitioner`` chooses it, each key hashed once (what a keyed loop keeps)."""

    def __init__(self, partitioner: Any, parts: list[int]) -> None:
        super().__init__()
        self.partitioner, self.parts = partitioner, parts

    def __missing__(self, key: bytes) -> int:
        part = self[key] = self.partitioner(key, self.parts, self.parts)
        return part

    __call__ = dict.__getitem__


#: One record `write_once` writes: (partition, key, value, headers).
Record = tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]


async def write_once(bootstrap: str, topic: str, n: int, records: Callable[[], Iterable[Record]],
                     create: Callable[[str, str], Awaitable[None]] = create_topic) -> dict[int, int]:
    """``topic`` with the ``n`` records ``records()`` makes, written in record batches once per broker
    (a topic of that name already holding ``n`` records is reused); its end offsets."""
    ends = await end_offsets(bootstrap, topic)
    if sum(ends.values()) == n and len(ends) == PARTITIONS:
        return ends
    if ends:
        await delete_topic(bootstrap, topic)
        await asyncio.sleep(1)
    await create(bootstrap, topic)
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=4 << 20)
    await producer.start()
    try:
        batches: dict[int, Any] = {}
        pending = []
        for p, key, value, headers in records():
            if p not in batches:
                batches[p] = producer.create_batch()
            if batches[p].append(key=key, value=value, timestamp=None, headers=headers) is None:
                pending.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=key, value=value, timestamp=None, headers=headers)
            if len(pending) > 16:
                await asyncio.gather(*pending)
                pending.clear()
        for p, batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    ends = await end_offsets(bootstrap, topic)
    if sum(ends.values()) != n:
        raise RuntimeError(f"topic {topic} has {sum(ends.values())} records, expected {n}")
    return ends


async def read_output(params: dict[str, Any], n: int) -> tuple[data.Digest, tuple[int, int], dict[int, int], int]:
    """Digest of the output topic, the first and last broker append times (ms), the group's committed offsets, and
    how many records have the wrong key (not the input's) or sit on another partition than their key's
    other records (a partitioner may differ between clients; a key's records must stay together)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    bootstrap, topic = params["bootstrap"], params["output_topic"]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    await consumer.start()
    builder = data.DigestBuilder()
    home: dict[bytes, int] = {}  # key -> the partition of its first record
    first, last, misplaced = 1 << 62, 0, 0
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        loads = orjson.loads
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            for tp, records in got.items():
                values = [loads(r.value) for r in records]
                builder.add_records(values)
                misplaced += sum(1 for r, v in zip(records, values, strict=True)
                                 if r.key != b"%d" % v["user_id"] or home.setdefault(r.key, tp.partition)
                                 != tp.partition)
                if records:
                    last = max(last, max(r.timestamp for r in records))
                    first = min(first, min(r.timestamp for r in records))
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    committed = await committed_offsets(bootstrap, params["group"], params["input_topic"])
    return builder.digest(), (first, last), committed, misplaced


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for p in range(PARTITIONS):
            off = await consumer.committed(TopicPartition(topic, p))
            if off is not None:
                out[p] = off
        return out
    finally:
        await consumer.stop()


# -- bare aiokafka loops ---------------------------------------------------------------------
def _transform(records: list[Any], index: dict[int, dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """parse -> filter -> enrich -> encode, as list comprehensions: (input key, output value) pairs."""
    loads, dumps = orjson.loads, orjson.dumps
    pairs = [(r.key, loads(r.value)) for r in records]
    kept = [(k, v) for k, v in pairs if v["amount"] >= 10.0]
    for _, v in kept:
        v.update(index[v["user_id"]])
    return [(k, dumps(v)) for k, v in kept]


async def _bare(params: dict[str, Any], per_batch: bool) -> dict[str, Any]:
    """The hand-written loop: fetch, transform, produce keyed by the input key, commit each second."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.partitioner import DefaultPartitioner
    from aiokafka.structs import OffsetAndMetadata

    tune_like_streamflow()
    topic_in, topic_out = params["input_topic"], params["output_topic"]
    ends = {TopicPartition(topic_in, int(p)): o for p, o in params["end_offsets"].items()}
    index = data.table_index()
    consumer = AIOKafkaConsumer(topic_in, bootstrap_servers=params["bootstrap"], group_id=params["group"],
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=1 << 20, fetch_max_wait_ms=100)
    producer = AIOKafkaProducer(bootstrap_servers=params["bootstrap"], acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=256 * 1024)
    consumed = 0
    t_first = None
    done: dict[Any, int] = {}
    with Stopwatch() as sw:  # from the clients' start, as streamflow's is from its runner's
        await consumer.start()
        await producer.start()
        part_of = KeyPartitions(DefaultPartitioner(), sorted(await producer.partitions_for(topic_out)))
        last_commit = time.monotonic()
        try:
            while any(done.get(tp, 0) < end for tp, end in ends.items()):
                got = await consumer.getmany(timeout_ms=200, max_records=BATCH)
                if not got:
                    continue
                if t_first is None:
                    t_first = time.time()
                futures = []
                for tp, records in got.items():
                    if not records:
                        continue
                    consumed += len(records)
                    pairs = _transform(records, index)
                    if per_batch:
                        futures += await _send_batches(producer, topic_out, part_of, pairs)
                    else:
                        send = producer.send
                        futures += [await send(topic_out, v, key=k) for k, v in pairs]
                    done[tp] = records[-1].offset + 1
                await asyncio.gather(*futures)  # every output of this fetch is on the broker
                if time.monotonic() - last_commit >= 1.0:
                    await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in done.items()})
                    last_commit = time.monotonic()
            t_done = time.time()
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in done.items()})
        finally:
            await producer.stop()
            await consumer.stop()
    return sw.result(consumed, t_first=t_first, t_done=t_done)


async def _send_batches(producer: Any, topic: str, part_of: KeyPartitions,
                        pairs: list[tuple[bytes, bytes]]) -> list[Any]:
    """Append each (key, value) to its key's partition's record batch; send each batch as it fills up
    and the rest at the end."""
    futures = []
    batches: dict[int, Any] = {}
    create = producer.create_batch
    for k, v in pairs:
        part = part_of(k)
        batch = batches.get(part)
        if batch is None:
            batch = batches[part] = create()
        if batch.append(key=k, value=v, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=part))
            batch = batches[part] = create()
            batch.append(key=k, value=v, timestamp=None)
    for part, batch in batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=part))
    return futures


async def bare_send(params: dict[str, Any]) -> dict[str, Any]:
    return await _bare(params, per_batch=False)


async def bare_batch(params: dict[str, Any]) -> dict[str, Any]:
    return await _bare(params, per_batch=True)


# -- streamflow ---------------------------------------------------------------------------------
def pipeline(params: dict[str, Any]) -> Any:
    """The kafka-enrich job as a streamflow pipeline."""
    import streamflow.connectors.kafka  # noqa: F401  (registers the kafka source and sink)
    import streamflow.transforms.enrich  # noqa: F401
    from streamflow import Pipeline

    batch = {"batch_size": params["batch_size"]} if params.get("batch_size") else {}  # None: the default
    channel = {"channel": {"max_batches": params["channel_batches"]}} if params.get("channel_batches") else {}
    return (Pipeline("kafka-enrich", delivery=params.get("delivery", "at_least_once"), **channel)
            .source("kafka", bootstrap_servers=params["bootstrap"], topics=[params["input_topic"]],
                    group_id=params["group"], **batch)
            .filter(data.keep)
            .transform("enrich", table=params["table"], key="user_id", fields=["segment", "region"])
            .sink("kafka", bootstrap_servers=params["bootstrap"], topic=params["output_topic"]))


async def run_streamflow(params: dict[str, Any], p: Any = None) -> dict[str, Any]:
    """Run ``p`` (default: the kafka-enrich pipeline) until every input offset is acknowledged."""
    from streamflow.core.runner import Runner

    ends = {int(p): o for p, o in params["end_offsets"].items()}
    p = p or pipeline(params)
    source = p.sources[0]
    marks: dict[str, float] = {}

    async def until_done(runner: Runner) -> None:
        """Stop the pipeline once every input offset is acknowledged (all outputs on the broker)."""
        stats = None
        while True:
            await asyncio.sleep(0.01)
            if "first" not in marks:
                stats = stats or runner.stats.get(source.name)
                if stats is not None and stats.events_out:
                    marks["first"] = time.time()
                continue
            wm = {tp.partition: o for tp, o in source.tracker.watermarks().items()}
            if all(wm.get(part, 0) >= end for part, end in ends.items()):
                marks["done"] = time.time()
                runner.stop()
                return

    runner = Runner(p, handle_signals=False, watchers=[until_done])
    with Stopwatch() as sw:
        result = await runner.run()
    if result.exit_code != 0:
        raise RuntimeError(f"pipeline failed: {result.summary()}")
    return sw.result(result.events_in, t_first=marks["first"], t_done=marks["done"])


# -- streamflow run --workers N ------------------------------------------------------------------
#: The kafka-enrich pipeline as YAML, for `streamflow run --workers N`.
PIPELINE_YAML = """\
name: kafka-enrich
source:
  type: kafka
  bootstrap_servers: {bootstrap}
  topics: [{input_topic}]
  group_id: {group}
stages:
  - type: filter
    fn: benchmarks.data:keep
  - type: enrich
    table: {table}
    key: user_id
    fields: [segment, region]
sinks:
  - type: kafka
    bootstrap_servers: {bootstrap}
    topic: {output_topic}
"""


def run_workers(params: dict[str, Any], workers: int) -> dict[str, Any]:
    """``streamflow run --workers N`` of the pipeline in a subprocess, stopped with SIGTERM once the group
    has committed the end of the input. Timed from its first output record to its last (the broker's
    append times); CPU is the supervisor's and the workers' whole processes, start-up included."""
    import os
    import resource
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    workdir = Path(params.get("workdir") or tempfile.mkdtemp())
    path = workdir / f"kafka-enrich-{params['group']}.yaml"
    path.write_text(PIPELINE_YAML.format(**params))
    ends = {int(p): o for p, o in params["end_offsets"].items()}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    root = Path(__file__).resolve().parent.parent
    with open(workdir / f"workers-{params['group']}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamflow.cli", "run", str(path), "--workers", str(workers)],
                                cwd=root, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(root)})
        try:
            deadline = time.monotonic() + 240
            while asyncio.run(committed_offsets(params["bootstrap"], params["group"], params["input_topic"])) != ends:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamflow --workers {workers} ended or stalled (exit {proc.poll()})")
                time.sleep(0.5)
            t_done = time.time()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    if code != 0:
        raise RuntimeError(f"streamflow --workers {workers} exited {code}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"events": params["n"], "seconds": 0.0, "cpu": round(cpu, 3), "t_first": None, "t_done": t_done,
            "note": f"{workers} worker processes; CPU includes the start-up of all {workers + 1} processes"}
