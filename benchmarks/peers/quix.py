"""kafka-enrich with Quix Streams: a StreamingDataFrame filter -> apply -> to_topic.

``params["delivery"] == "exactly_once"`` (variant ``quixstreams-eos``) runs it with Quix's
``processing_guarantee="exactly-once"`` (a Kafka transaction per commit interval).
"""

from __future__ import annotations

import time
from typing import Any

from .. import data
from ..harness import Stopwatch


def run(params: dict[str, Any]) -> dict[str, Any]:
    from quixstreams import Application

    n = params["n"]
    index = data.table_index()
    app = Application(broker_address=params["bootstrap"], consumer_group=params["group"],
                      auto_offset_reset="earliest", commit_interval=1.0, loglevel="WARNING",
                      use_changelog_topics=False, auto_create_topics=False,
                      processing_guarantee="exactly-once" if params.get("delivery") == "exactly_once"
                      else "at-least-once")
    source = app.topic(params["input_topic"], value_deserializer="json")
    sink = app.topic(params["output_topic"], value_serializer="json")
    state = {"count": 0, "t_first": None}

    def count(value: dict[str, Any]) -> None:
        if state["t_first"] is None:
            state["t_first"] = time.time()
        state["count"] += 1
        if state["count"] >= n:
            app.stop()  # quix finishes this message, flushes the producer and commits

    def enrich(value: dict[str, Any]) -> dict[str, Any]:
        value.update(index[value["user_id"]])
        return value

    sdf = app.dataframe(source)
    sdf = sdf.update(count)
    sdf = sdf.filter(data.keep)
    sdf = sdf.apply(enrich)
    sdf.to_topic(sink)
    with Stopwatch() as sw:
        app.run(sdf)
    return sw.result(state["count"], t_first=state["t_first"], t_done=time.time())
