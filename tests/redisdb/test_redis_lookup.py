"""enrich's redis lookup against a real redis-server: GET and HGETALL, one pipelined round trip per batch."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streamflow import Pipeline

from .helpers import command_calls, connection, reads, run
from .server import RedisServer


def enrich(server: RedisServer, **options: Any) -> dict[str, Any]:
    redis = {**connection(server), **options.pop("redis", {})}
    return {"type": "enrich", "name": "lookup", "key": "customer", "redis": redis, **options}


async def test_string_json_hash_and_text_values_hits_and_misses(redis_server: RedisServer, r: Any) -> None:
    await r.set("c:1", orjson.dumps({"name": "Ada", "tier": "gold"}))
    await r.hset("h:1", mapping={"name": "Bob", "tier": "silver"})
    await r.set("t:1", "plain text")
    events = [{"customer": 1}, {"customer": "2"}]
    _, out, _ = await run([dict(e) for e in events], enrich(redis_server, redis={"key_prefix": "c:"}))
    assert out.values == [{"customer": 1, "name": "Ada", "tier": "gold"}, {"customer": "2"}]
    _, out, _ = await run([dict(e) for e in events],
                          enrich(redis_server, prefix="customer_", redis={"key_prefix": "h:", "value": "hash"}))
    assert out.values == [{"customer": 1, "customer_name": "Bob", "customer_tier": "silver"}, {"customer": "2"}]
    _, out, _ = await run([dict(e) for e in events], enrich(redis_server, on_missing="drop", redis={
        "key_prefix": "t:", "value": "text", "field": "note"}))
    assert out.values == [{"customer": 1, "note": "plain text"}]


async def test_unreadable_values_fail_only_their_events(redis_server: RedisServer, r: Any) -> None:
    await r.set("c:1", orjson.dumps({"name": "Ada"}))
    await r.set("c:2", b"[1, 2]")              # JSON, but not an object
    await r.set("c:3", b"{not json")
    await r.hset("c:4", "name", "a hash")      # MGET reads a hash as missing
    values = [{"customer": i} for i in range(1, 6)] + ["not a mapping", {"customer": {"a": 1}}]
    _, out, dlq = await run(values, enrich(redis_server, on_missing="error", on_error="dead_letter",
                                           redis={"key_prefix": "c:"}))
    assert out.values == [{"customer": 1, "name": "Ada"}]
    _, _, hash_dlq = await run([{"customer": 1}, {"customer": 4}], enrich(
        redis_server, on_error="dead_letter", redis={"key_prefix": "c:", "value": "hash"}))
    assert [d["source"]["offset"] for d in hash_dlq.values] == [0] and "WRONGTYPE" in hash_dlq.values[0]["error"]
    errors = {d["source"]["offset"]: d["error"] for d in dlq.values}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6]
    assert "expected an object" in errors[1] and "not json" in errors[2]
    assert "nothing found for key 'c:4'" in errors[3] and "nothing found for key 'c:5'" in errors[4]
    assert "mapping event value" in errors[5] and "not dict" in errors[6]


async def test_one_round_trip_per_batch(redis_server: RedisServer, r: Any) -> None:
    for i in range(0, 1000, 100):
        await r.mset({f"c:{j}": orjson.dumps({"n": j}) for j in range(i, i + 100)})
        await r.hset(f"h:{i}", mapping={"n": i})
    events = [{"customer": i} for i in range(1000)]              # 20 batches of 50 distinct keys
    await r.config_resetstat()
    before = await reads(r)
    _, out, _ = await run(events, enrich(redis_server, redis={"key_prefix": "c:"}), batch_size=50)
    assert [v["n"] for v in out.values] == list(range(1000))
    assert await command_calls(r, "mget") == 20 and await command_calls(r, "get") == 0
    # the server read its sockets once per batch (20), plus on connect (AUTH, CLIENT SETINFO, PING) and for INFO
    assert 20 <= await reads(r) - before <= 30
    before = await reads(r)
    _, out, _ = await run([dict(e) for e in events], enrich(redis_server, redis={"key_prefix": "h:", "value": "hash"}),
                          batch_size=50)
    assert [v.get("n") for v in out.values[:101:100]] == ["0", "100"]
    assert await command_calls(r, "hgetall") == 1000
    assert 20 <= await reads(r) - before <= 30                  # 1000 HGETALLs: one pipeline per batch
    before = await reads(r)
    for i in range(50):   # the measure itself: one GET per round trip is one read each
        await r.get(f"c:{i}")
    assert await reads(r) - before >= 50


async def test_cache_and_single_flight_fetch_each_key_once(redis_server: RedisServer, r: Any) -> None:
    await r.mset({f"c:{i}": orjson.dumps({"n": i}) for i in range(300)})
    await r.config_resetstat()
    events = [{"customer": i % 400} for i in range(4000)]      # 100 keys are missing: cached as missing too
    _, out, _ = await run(events, enrich(redis_server, concurrency=50, cache={"max_size": 1000},
                                         redis={"key_prefix": "c:"}), batch_size=100)
    assert [v["customer"] for v in out.values] == [i % 400 for i in range(4000)]
    assert all(v.get("n") == (v["customer"] if v["customer"] < 300 else None) for v in out.values)
    stats = await r.info("stats")                              # keys the server looked up: each once
    assert (stats["keyspace_hits"], stats["keyspace_misses"]) == (300, 100)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="value: text needs `field`"):
        Pipeline("x").enrich(key="k", redis={"value": "text"})
    with pytest.raises(ValueError, match="needs a rediss:// url"):
        Pipeline("x").enrich(key="k", redis={"url": "redis://h:6379", "ca_file": "ca.pem"})
    with pytest.raises(ValueError, match="must start with redis://"):
        Pipeline("x").enrich(key="k", redis={"url": "http://h:6379"})
    with pytest.raises(ValueError, match="enrich with `redis` needs `key`"):
        Pipeline("x").enrich(redis={})
    with pytest.raises(ValueError, match="exactly one of `table`, `fn`, `url`, `postgres` or `redis`"):
        Pipeline("x").enrich(key="k", fn="json:dumps", redis={})
