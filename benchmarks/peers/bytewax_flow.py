"""kafka-enrich with Bytewax: KafkaSource (until the end offsets) -> map/filter -> KafkaSink keyed by the input
key, one worker."""

from __future__ import annotations

import time
from typing import Any

import orjson

from .. import data
from ..harness import Stopwatch


def run(params: dict[str, Any]) -> dict[str, Any]:
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.testing import run_main

    index = data.table_index()
    state = {"count": 0, "t_first": None}
    loads, dumps = orjson.loads, orjson.dumps

    def parse(msg: Any) -> tuple[bytes, dict[str, Any]]:
        if state["t_first"] is None:
            state["t_first"] = time.time()
        state["count"] += 1
        return msg.key, loads(msg.value)

    def enrich(pair: tuple[bytes, dict[str, Any]]) -> KafkaSinkMessage:
        key, value = pair
        value.update(index[value["user_id"]])
        return KafkaSinkMessage(key, dumps(value))

    brokers = [params["bootstrap"]]
    flow = Dataflow("kafka-enrich")
    stream = op.input("in", flow, KafkaSource(brokers, [params["input_topic"]], tail=False,
                                              add_config={"group.id": params["group"]},
                                              batch_size=params["batch_size"]))
    values = op.map("parse", stream, parse)
    kept = op.filter("filter", values, lambda pair: data.keep(pair[1]))
    out = op.map("enrich", kept, enrich)
    op.output("out", out, KafkaSink(brokers, params["output_topic"]))
    with Stopwatch() as sw:
        run_main(flow)
    return sw.result(state["count"], t_first=state["t_first"], t_done=time.time())
