"""Proposed connector hot-path changes, tried in a copy to measure what they would gain.

The connectors (file source/sink, Kafka sink) and the `enrich` transform are
owned elsewhere; this module does not change them. It patches copies of their
hot paths into the running process, for the opt-in variant
``streamflow-proposed`` (``python -m benchmarks run --variant streamflow-proposed``),
so each recommendation in benchmarks/README.md comes with a measured gain.
Behaviour is kept: every patched path falls back to the original code for
anything but the plain case (blank or undecodable lines, dotted keys,
missing keys, function mode, send errors).
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

#: Environment variable naming the proposals to install (comma-separated names of `PATCHES`; default all).
ENV = "STREAMFLOW_BENCH_PROPOSALS"


def install() -> None:
    """Patch the proposed hot paths in (this process only); ``$STREAMFLOW_BENCH_PROPOSALS`` selects some."""
    import os

    chosen = os.environ.get(ENV)
    names = [n.strip() for n in chosen.split(",") if n.strip()] if chosen else list(PATCHES)
    for name in names:
        PATCHES[name]()


# -- 1. file source: decode a batch with one list comprehension ------------------------------
def _line_source_make_batch() -> None:
    from streamflow.connectors import formats
    from streamflow.core.batch import Batch
    from streamflow.core.message import Message

    original = formats.LineSource.make_batch
    loads = orjson.loads

    async def make_batch(self: Any, lines: list[bytes], first_line: int, topic: str, ack: Any) -> Any:
        if type(self.decoder) is not formats.JsonLinesDecoder:
            return await original(self, lines, first_line, topic, ack)
        try:
            values = [loads(line) for line in lines]  # blank or bad lines raise: per-line path
        except orjson.JSONDecodeError:
            return await original(self, lines, first_line, topic, ack)
        if any(line.endswith(b"\r") for line in lines):
            return await original(self, lines, first_line, topic, ack)
        msgs = [Message(v, None, None, None, topic, 0, n, line)
                for n, v, line in zip(itertools.count(first_line + 1), values, lines)]
        return Batch(msgs, [ack])

    formats.LineSource.make_batch = make_batch  # type: ignore[method-assign]


# -- 2. file sink: page-cache writes inline, not through a thread per batch -------------------
def _file_sink_inline_writes() -> None:
    """Appending one batch (~100 KB) to the page cache takes microseconds; the thread hand-off
    per batch costs more (executor queue, wake-up, GIL hand-back). Only fsync needs a thread."""
    import asyncio
    import os

    from streamflow.connectors import files_sink

    async def _write(f: Any, data: bytes, flush: bool, fsync: bool) -> None:
        if data:
            f.write(data)
        if flush:
            f.flush()
            if fsync:
                await asyncio.to_thread(os.fsync, f.fileno())

    files_sink._write = _write  # type: ignore[assignment]


# -- 3. enrich (table mode): one dict lookup per event, no per-event method calls ---------------
def _enrich_table_fast() -> None:
    from streamflow.transforms import enrich

    original = enrich.Enrich.fast

    def fast(self: Any, batch: Any) -> Any:
        key = self.config.key
        if self.fn is not None or key is None or "." in key:
            return original(self, batch)
        values = [m.value for m in batch.messages]
        if not all(type(v) is dict for v in values):
            return original(self, batch)
        get = self._table.get
        found = [get(v.get(key)) for v in values]
        if None in found:  # missing (or str-keyed) rows: the on_missing policy decides
            return original(self, batch)
        for v, row in zip(values, found, strict=True):
            v.update(row)
        return batch

    enrich.Enrich.fast = fast  # type: ignore[method-assign]


# -- 4. kafka sink: plain records cheaply, one BatchBuilder per partition -------------------
def _kafka_sink_batches() -> None:
    from streamflow.connectors.kafka import sink as ksink

    original_send, original_record = ksink.KafkaSink._send, ksink.KafkaSink._record

    def _record(self: Any, m: Any) -> Any:
        """The common case (fixed topic, the message's own key, no headers to pass or add, send time
        as timestamp, not dead-letter output) without the general path's per-message checks."""
        c = self.config
        if (c.topic is None or self._raw_out or m.headers or self._static_headers or c.keep_timestamp
                or c.key_fn is not None or c.key_field is not None):
            return original_record(self, m)
        v = m.value
        if v is None or type(v) is not dict:
            return original_record(self, m)
        key = m.key
        if key is not None and type(key) is not bytes:
            key = key.encode() if type(key) is str else original_record(self, m).key
        return ksink._Record(m, c.topic, key, self._encode(v), [], None)

    async def _send(self: Any, records: list[Any]) -> Any:
        producer = self._producer
        attempt = ksink._Attempt(producer)
        try:
            by_tp: dict[tuple[str, int], list[Any]] = {}
            meta: dict[str, tuple[list[int], list[int]]] = {}
            sticky: dict[str, int] = {}
            for r in records:
                topic = r.topic
                if topic not in meta:
                    await producer.client._wait_on_metadata(topic)
                    meta[topic] = (sorted(producer._metadata.partitions_for_topic(topic)),
                                   list(producer._metadata.available_partitions_for_topic(topic)))
                parts, available = meta[topic]
                if r.key is None:  # keyless: one partition per call (Kafka's sticky partitioner)
                    if topic not in sticky:
                        self._rr = getattr(self, "_rr", -1) + 1
                        sticky[topic] = parts[self._rr % len(parts)]
                    part = sticky[topic]
                else:
                    part = producer._partitioner(r.key, parts, available)
                by_tp.setdefault((topic, part), []).append(r)
            for (topic, part), recs in by_tp.items():
                builder, members = producer.create_batch(), []
                for r in recs:
                    if builder.append(key=r.key, value=r.value, timestamp=r.timestamp_ms,
                                      headers=r.headers) is None:
                        fut = await producer.send_batch(builder, topic, partition=part)
                        attempt.sent += [(m, fut) for m in members]
                        builder, members = producer.create_batch(), []
                        builder.append(key=r.key, value=r.value, timestamp=r.timestamp_ms, headers=r.headers)
                    members.append(r)
                if members:
                    fut = await producer.send_batch(builder, topic, partition=part)
                    attempt.sent += [(m, fut) for m in members]
        except Exception:  # noqa: BLE001 - anything unusual: the original per-message path
            if attempt.sent:
                raise
            return await original_send(self, records)
        return attempt

    ksink.KafkaSink._record = _record  # type: ignore[method-assign]
    ksink.KafkaSink._send = _send  # type: ignore[method-assign]


# -- 5. generator (format json): exact-size bytes -----------------------------------------------
def _generator_exact_bytes() -> None:
    """orjson returns each document in a ~4 KiB allocation: 25k events in flight then take
    ~100 MiB. Copying into an exact-size object costs ~90 ns per event (memory workload, 200k
    events: peak RSS 177 -> 71 MiB, same throughput)."""
    import types

    from streamflow.connectors import generator

    dumps = orjson.dumps
    generator.orjson = types.SimpleNamespace(dumps=lambda v: b"%b" % dumps(v))  # type: ignore[assignment]


#: Proposal name -> installer.
PATCHES = {
    "file-source-batch-decode": _line_source_make_batch,
    "file-sink-inline-write": _file_sink_inline_writes,
    "enrich-table-fast": _enrich_table_fast,
    "kafka-sink-batches": _kafka_sink_batches,
    "generator-exact-bytes": _generator_exact_bytes,
}
