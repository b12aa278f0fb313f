"""kafka-count (a count per key, each updated count out) with Quix Streams, Faust and Bytewax.

Each ``run_<peer>(params)`` has the contract of the kafka-enrich peers: ``events``
consumed, ``seconds``, ``t_first`` (wall clock of the first consumed message).
Output records carry the input's key and the new count as ASCII digits.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from ..harness import Stopwatch


def run_quixstreams(params: dict[str, Any]) -> dict[str, Any]:
    """``sdf.apply(count, stateful=True)``: RocksDB state per partition, with its changelog topic."""
    from quixstreams import Application

    n = params["n"]
    app = Application(broker_address=params["bootstrap"], consumer_group=params["group"],
                      auto_offset_reset="earliest", commit_interval=1.0, loglevel="WARNING",
                      state_dir=str(Path(params["workdir"]) / "quix-state"), auto_create_topics=True)
    source = app.topic(params["input_topic"], key_deserializer="bytes", value_deserializer="json")
    sink = app.topic(params["output_topic"], key_serializer="bytes", value_serializer="bytes")
    seen = {"count": 0, "t_first": None}

    def consumed(value: Any) -> None:
        if seen["t_first"] is None:
            seen["t_first"] = time.time()
        seen["count"] += 1
        if seen["count"] >= n:
            app.stop()  # quix finishes this message, flushes the producer and commits

    def count(value: Any, state: Any) -> bytes:
        c = state.get("count", 0) + 1
        state.set("count", c)
        return b"%d" % c

    sdf = app.dataframe(source)
    sdf = sdf.update(consumed)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(sink)
    with Stopwatch() as sw:
        app.run(sdf)
    return sw.result(seen["count"], t_first=seen["t_first"], t_done=time.time())


def run_faust(params: dict[str, Any]) -> dict[str, Any]:
    """A ``Table`` with ``store="rocksdb://"`` (rocksdict) and its changelog; one send per output."""
    import mode.loop

    mode.loop.use("uvloop")
    import faust
    from faust import Worker

    from .faust_app import finish

    n = params["n"]
    app = faust.App(params["group"], broker=f"kafka://{params['bootstrap']}", value_serializer="raw",
                    key_serializer="raw", web_enabled=False, store=os.environ.get("SF_BENCH_FAUST_STORE", "rocksdb://"),
                    datadir=str(Path(params["workdir"]) / f"faust-{params['group']}"),
                    consumer_auto_offset_reset="earliest", broker_commit_interval=1.0,
                    topic_replication_factor=1, topic_partitions=3, producer_acks=-1, producer_linger_ms=5,
                    stream_wait_empty=False)
    source = app.topic(params["input_topic"], key_serializer="raw", value_serializer="raw", partitions=3)
    sink = app.topic(params["output_topic"], key_serializer="raw", value_serializer="raw", partitions=3)
    counts = app.Table("counts", partitions=3)  # bytes -> ASCII count (the app's serializers are raw)
    seen: dict[str, Any] = {"count": 0, "t_first": None}
    sw = Stopwatch()

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            if seen["t_first"] is None:
                seen["t_first"] = time.time()
                sw.__enter__()
            key = event.key
            c = b"%d" % (int(counts.get(key) or 0) + 1)
            counts[key] = c
            await sink.send(key=key, value=c)
            seen["count"] += 1
            if seen["count"] >= n:
                asyncio.ensure_future(finish(app, sw, seen, params))

    Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    return {"unsupported": "faust worker exited before the end of the input"}


def run_bytewax(params: dict[str, Any]) -> dict[str, Any]:
    """``stateful_map`` keyed by the Kafka key; state in memory (no recovery store, no changelog)."""
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import run_main

    seen: dict[str, Any] = {"count": 0, "t_first": None}

    def keyed(msg: Any) -> tuple[str, None]:
        if seen["t_first"] is None:
            seen["t_first"] = time.time()
        seen["count"] += 1
        return msg.key.decode(), None

    def count(state: int | None, _: None) -> tuple[int, int]:
        c = (state or 0) + 1
        return c, c

    brokers = [params["bootstrap"]]
    flow = Dataflow("kafka-count")
    stream = op.input("in", flow, KafkaSource(brokers, [params["input_topic"]], tail=False,
                                              add_config={"group.id": params["group"]},
                                              batch_size=params["batch_size"]))
    counted = op.stateful_map("count", op.map("key", stream, keyed), count)
    out = op.map("encode", counted, lambda kv: KafkaSinkMessage(kv[0].encode(), b"%d" % kv[1]))
    op.output("out", out, KafkaSink(brokers, params["output_topic"]))
    with Stopwatch() as sw:
        run_main(flow)
    return sw.result(seen["count"], t_first=seen["t_first"], t_done=time.time())
