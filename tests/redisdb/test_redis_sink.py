"""The redis sink against a real redis-server: SET, HSET, XADD and LPUSH, TTLs, one round trip per batch."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from streamflow import Pipeline
from streamflow.connectors.redis_sink import RedisSink

from .helpers import command_calls, connection, reads, run
from .server import RedisServer


def sink(server: RedisServer, **options: Any) -> RedisSink:
    return RedisSink(name="redis", **connection(server), **options)


EVENTS = [{"id": i, "name": f"n{i}", "tags": ["a", i]} for i in range(10)]


async def test_set_with_ttl(redis_server: RedisServer, r: Any) -> None:
    src, _, _ = await run([dict(e) for e in EVENTS], sink=sink(redis_server, key="user:{id}", ttl=100))
    assert src.committed == {0: 10}
    assert orjson.loads(await r.get("user:3")) == {"id": 3, "name": "n3", "tags": ["a", 3]}
    assert 99_000 < await r.pttl("user:3") <= 100_000 and 99 <= await r.ttl("user:9") <= 100
    await run([{"id": 1}], sink=sink(redis_server, key="plain:{id}"))
    assert await r.ttl("plain:1") == -1                                  # no ttl: never expires


async def test_hset_xadd_lpush_with_ttl(redis_server: RedisServer, r: Any) -> None:
    events = [dict(e) for e in EVENTS]
    await run(events, sink=sink(redis_server, command="hset", key="h:{id}", ttl=50, fields=["name", "tags"]))
    assert await r.hgetall("h:4") == {b"name": b"n4", b"tags": b'["a",4]'}
    assert 49 <= await r.ttl("h:4") <= 50
    await run(events, sink=sink(redis_server, command="xadd", key="stream", ttl=60, maxlen=1000))
    entries = await r.xrange("stream")
    assert [e[1] for e in entries][:2] == [{b"id": b"0", b"name": b"n0", b"tags": b'["a",0]'},
                                            {b"id": b"1", b"name": b"n1", b"tags": b'["a",1]'}]
    assert len(entries) == 10 and 59 <= await r.ttl("stream") <= 60
    await run(events, sink=sink(redis_server, command="xadd", key="s:{name}", payload_field="data"))
    assert [orjson.loads(e[1][b"data"]) for e in await r.xrange("s:n2")] == [EVENTS[2]]
    await run(events, sink=sink(redis_server, command="lpush", key="list", ttl=70))
    assert [orjson.loads(v)["id"] for v in await r.lrange("list", 0, -1)] == list(range(9, -1, -1))
    assert 69 <= await r.ttl("list") <= 70


async def test_one_round_trip_per_batch(redis_server: RedisServer, r: Any) -> None:
    out = sink(redis_server, key="k:{id}", ttl=30, command="hset")
    before = await reads(r)
    await run([{"id": i, "v": i} for i in range(1000)], sink=out, batch_size=100)
    assert await command_calls(r, "hset") == 1000 and await command_calls(r, "pexpire") == 1000
    assert out.round_trips == 10
    assert 10 <= await reads(r) - before <= 20     # 10 batches (+ connect and INFO): 2000 commands


async def test_refused_events_go_to_on_error_the_rest_is_written(redis_server: RedisServer, r: Any) -> None:
    await r.set("h:3", "a string")                             # HSET on it: WRONGTYPE
    values: list[Any] = [{"id": i, "v": i} for i in range(6)]
    values[1] = {"v": "no id"}                                 # no key field
    values[4] = "not a mapping"
    src, _, dlq = await run(values, sink=sink(redis_server, command="hset", key="h:{id}", on_error="dead_letter"))
    assert src.committed == {0: 6}
    assert sorted(await r.keys("h:*")) == [b"h:0", b"h:2", b"h:3", b"h:5"]
    errors = {d["source"]["offset"]: d["error"] for d in dlq.values}
    assert sorted(errors) == [1, 3, 4]
    assert "no field 'id'" in errors[1] and "WRONGTYPE" in errors[3] and "mapping" in errors[4]


async def test_an_outage_is_retried_and_the_batch_acked_only_after_redis_answered(
        redis_server: RedisServer, r: Any) -> None:
    async def slowly(value: Any) -> Any:
        await asyncio.sleep(0.005)
        return value

    out = sink(redis_server, key="k:{id}", timeout=0.3)
    running = asyncio.create_task(run([{"id": i} for i in range(600)], slowly, sink=out, batch_size=10))
    while not await r.exists("k:0"):
        await asyncio.sleep(0.01)
    await r.client_pause(2000, all=True)          # every command waits 2 s: the sink's time out, are retried
    src, _, dlq = await running
    assert src.committed == {0: 600} and dlq.values == []
    assert len(await r.keys("k:*")) == 600
    assert out.ctx is not None and out.ctx.stats.retries >= 1


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="`fields` applies to command: hset and xadd"):
        Pipeline("x").sink("redis", key="k", fields=["a"])
    with pytest.raises(ValueError, match="`payload_field` and `maxlen` apply to command: xadd"):
        Pipeline("x").sink("redis", key="k", maxlen=10)
    with pytest.raises(ValueError, match="needs a field name"):
        Pipeline("x").sink("redis", key="user:{}")
    with pytest.raises(ValueError, match="key — missing required key"):
        Pipeline("x").sink("redis")
