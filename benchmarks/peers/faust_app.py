"""kafka-enrich with Faust (faust-streaming): one agent iterating the input topic's events, sending each
output with its input's key."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import orjson

from .. import data
from ..harness import Stopwatch, peak_rss_kib


def run(params: dict[str, Any]) -> dict[str, Any]:
    import mode.loop

    mode.loop.use("uvloop")  # what `faust -L uvloop worker` does: faust's fastest setting
    import faust
    from faust import Worker

    n = params["n"]
    index = data.table_index()
    loads, dumps = orjson.loads, orjson.dumps
    workdir = Path(params.get("workdir") or ".") / f"faust-{params['group']}"
    app = faust.App(params["group"], broker=f"kafka://{params['bootstrap']}", value_serializer="raw",
                    key_serializer="raw", web_enabled=False, store="memory://", datadir=str(workdir),
                    consumer_auto_offset_reset="earliest", broker_commit_interval=1.0,
                    topic_replication_factor=1, topic_partitions=3, producer_acks=-1,
                    producer_linger_ms=5, stream_wait_empty=False)
    source = app.topic(params["input_topic"], value_serializer="raw", partitions=3)
    sink = app.topic(params["output_topic"], value_serializer="raw", partitions=3)
    state: dict[str, Any] = {"count": 0, "t_first": None}
    sw = Stopwatch()

    @app.agent(source)
    async def enrich(stream: Any) -> None:
        # one event at a time: faust's batched form (``take``) gives values without their keys
        async for event in stream.events():
            if state["t_first"] is None:
                state["t_first"] = time.time()
                sw.__enter__()
            state["count"] += 1
            v = loads(event.value)
            if v["amount"] >= 10.0:
                v.update(index[v["user_id"]])
                await sink.send(key=event.key, value=dumps(v))
            if state["count"] >= n:
                asyncio.ensure_future(finish(app, sw, state, params))

    Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    return {"unsupported": "faust worker exited before the end of the input"}


async def finish(app: Any, sw: Stopwatch, state: dict[str, Any], params: dict[str, Any]) -> None:
    """Once the agent saw every event: flush, commit, write the result and exit the worker at once."""
    await app.producer.flush()
    t_done = time.time()
    sw.__exit__()
    # commit what the agent acknowledged (faust acks an event when the iteration moves past it)
    await asyncio.sleep(0.1)
    await app.consumer.commit()
    result = sw.result(state["count"], t_first=state["t_first"], t_done=t_done, child_rss_kib=peak_rss_kib())
    Path(params["_result_file"]).write_text(json.dumps(result))
    os._exit(0)  # faust's worker shutdown is slow and not what is measured
