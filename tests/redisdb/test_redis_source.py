"""The redis_stream source against a real redis-server: consumer groups, XACK only after the sinks, pending
entries read again, entries of a dead consumer taken over."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest

from streamflow import Batch, Pipeline
from streamflow.connectors.memory import MemorySink
from streamflow.connectors.redis_source import RedisStreamSource
from streamflow.core.errors import PipelineFailed

from .helpers import connection, run
from .server import RedisServer


def source(server: RedisServer, **options: Any) -> RedisStreamSource:
    defaults = {"streams": ["orders"], "group": "g", "consumer": "c1", "start_id": "0", "mode": "read",
                "batch_size": 50}
    return RedisStreamSource(**connection(server), **{**defaults, **options})


async def add(r: Any, n: int, stream: str = "orders", start: int = 0) -> list[bytes]:
    """XADD ``n`` entries ``{n: i}``; their ids."""
    async with r.pipeline(transaction=False) as pipe:
        for i in range(start, start + n):
            pipe.xadd(stream, {"n": i, "note": f"entry {i}"})
        return list(await pipe.execute())


async def pending(r: Any, stream: str = "orders", group: str = "g") -> list[bytes]:
    """The ids in the group's pending entries list."""
    return [p["message_id"] for p in await r.xpending_range(stream, group, "-", "+", 100_000)]


async def last_delivered(r: Any, stream: str = "orders") -> bytes:
    """The id the group has read up to."""
    return (await r.xinfo_groups(stream))[0]["last-delivered-id"]  # type: ignore[no-any-return]


class FailingSink(MemorySink):
    """Writes ``ok`` batches, then fails the pipeline."""

    def __init__(self, ok: int) -> None:
        super().__init__(name="failing")
        self.ok = ok

    async def write(self, batch: Batch) -> None:
        if self.ok == 0:
            raise PipelineFailed("the sink is down")   # not retried: the pipeline stops
        self.ok -= 1
        await super().write(batch)


async def test_entries_become_events_and_are_acked(redis_server: RedisServer, r: Any) -> None:
    ids = await add(r, 250)
    src, out, _ = await run([], source=source(redis_server))
    assert [v["n"] for v in out.values] == [str(i) for i in range(250)]
    assert out.values[7] == {"n": "7", "note": "entry 7"}
    first = out.messages[0]
    assert first.header("redis.id") == ids[0] and first.topic == "orders"
    assert first.timestamp == int(ids[0].split(b"-")[0]) / 1000
    assert await pending(r) == [] and src.acked == 250
    assert (await r.xinfo_groups("orders"))[0]["last-delivered-id"] == ids[-1]


async def test_several_streams_one_batch_each(redis_server: RedisServer, r: Any) -> None:
    a, b = await add(r, 30, "a"), await add(r, 70, "b")
    src, out, _ = await run([], source=source(redis_server, streams=["a", "b"], batch_size=1000))
    by_stream = {s: [m.header("redis.id") for m in out.messages if m.topic == s] for s in ("a", "b")}
    assert by_stream == {"a": a, "b": b}
    assert await pending(r, "a") == [] and await pending(r, "b") == [] and src.acked == 100


async def test_start_id_dollar_reads_only_new_entries(redis_server: RedisServer, r: Any) -> None:
    await add(r, 10)
    _, out, _ = await run([], source=source(redis_server, start_id="$"))
    assert out.values == []                                      # the group starts after the existing ones
    await add(r, 5, start=10)
    _, out, _ = await run([], source=source(redis_server, start_id="$"))
    assert [v["n"] for v in out.values] == ["10", "11", "12", "13", "14"]


async def test_payload_field_decoded_bad_payloads_dead_lettered_and_acked(redis_server: RedisServer,
                                                                         r: Any) -> None:
    await r.xadd("orders", {"data": orjson.dumps({"id": 1}), "k": "a"})
    await r.xadd("orders", {"data": b"{not json", "k": "b"})
    await r.xadd("orders", {"other": b"x"})
    src, out, dlq = await run([], source=source(redis_server, payload_field="data", key_field="k",
                                                on_error="dead_letter"))
    assert out.values == [{"id": 1}] and out.messages[0].key == "a"
    assert [d["payload"] for d in dlq.values] == ["{not json", "other=x"]
    assert "no field 'data'" in dlq.values[1]["error"]
    assert await pending(r) == []                                # dead-lettered is done: acked


async def test_xack_only_after_the_sink_acked(redis_server: RedisServer, r: Any) -> None:
    ids = await add(r, 500)
    src, _, _ = await run([], source=source(redis_server), sink=FailingSink(ok=3), expect=1)
    # 3 batches of 50 written and acked: XACKed; the entries read after them stay pending
    left = await pending(r)
    read = ids[:ids.index(await last_delivered(r)) + 1]
    assert [i for i in read if i not in left] == ids[:150] and src.acked == 150
    assert left == read[150:] and len(left) >= 50


async def test_a_held_ack_holds_the_xack(redis_server: RedisServer, r: Any) -> None:
    ids = await add(r, 100)
    held: list[Batch] = []

    class Holding(MemorySink):   # acknowledges a batch only when the test says so
        acks_itself = True

        async def write(self, batch: Batch) -> None:
            held.append(batch)
            self.messages.extend(batch.messages)

    out = Holding(name="held")
    src = source(redis_server, mode="follow", block=0.1)
    running = asyncio.create_task(run([], source=src, sink=out))
    while len(out.values) < 100:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)                        # several commit intervals: nothing is XACKed
    assert await pending(r) == ids
    held[1].ack()                                   # the second batch: still behind the first
    await asyncio.sleep(0.3)
    assert await pending(r) == ids
    held[0].ack()
    while await pending(r) != []:
        await asyncio.sleep(0.01)
    assert src.lag() == {("orders", 0): 0}          # measured at each commit: everything was read
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def test_lag_is_what_the_group_has_not_read(redis_server: RedisServer, r: Any) -> None:
    await add(r, 30_000)
    src = source(redis_server, mode="follow", block=0.1, batch_size=1000)
    running = asyncio.create_task(run([], source=src, sink=MemorySink(name="slow", delay=5)))  # channels fill up

    async def unread() -> int:
        return 30_000 - int((await r.xinfo_groups("orders"))[0]["entries-read"])
    lag, left = None, -1
    for _ in range(1200):   # until the source is held back and a commit measured it
        await asyncio.sleep(0.05)
        lag, left = src.lag().get(("orders", 0)), await unread()
        if lag == left:
            break
    assert lag == left and 0 < left < 30_000
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def test_a_restart_reads_its_pending_entries_first(redis_server: RedisServer, r: Any) -> None:
    ids = await add(r, 300)
    await run([], source=source(redis_server), sink=FailingSink(ok=2), expect=1)
    left = await pending(r)
    assert left and set(left) <= set(ids[100:])
    src, out, _ = await run([], source=source(redis_server))
    got = [m.header("redis.id") for m in out.messages]
    assert got[:len(left)] == left                              # the pending ones first, in order
    assert set(got) == set(ids[100:]) and len(got) == 200 and src.replayed == len(left)
    assert await pending(r) == []


async def test_entries_of_a_dead_consumer_are_taken_over(redis_server: RedisServer, r: Any) -> None:
    ids = await add(r, 120)
    await r.xgroup_create("orders", "g", id="0")
    await r.xreadgroup("g", "dead", {"orders": ">"}, count=70)  # read and never acknowledged
    await asyncio.sleep(0.3)
    src, out, _ = await run([], source=source(redis_server, consumer="alive", claim_idle=0.2))
    assert {m.header("redis.id") for m in out.messages} == set(ids) and len(out.messages) == 120
    assert src.claimed == 70 and await pending(r) == []
    # without claim_idle the dead consumer's entries stay where they are
    await add(r, 10, start=120)
    await r.xreadgroup("g", "dead", {"orders": ">"}, count=4)
    _, out, _ = await run([], source=source(redis_server, consumer="alive"))
    assert len(out.values) == 6 and len(await pending(r)) == 4


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="`block` must be shorter than `timeout`"):
        Pipeline("x").source("redis_stream", streams=["s"], group="g", block=5, timeout=2)
    with pytest.raises(ValueError, match="streams"):
        Pipeline("x").source("redis_stream", streams=[], group="g")
    with pytest.raises(ValueError, match="start_id"):
        Pipeline("x").source("redis_stream", streams=["s"], group="g", start_id="latest")
    Pipeline("x").source("redis_stream", streams=["s"], group="g", start_id="1700000000000-3")


async def test_reads_through_an_outage_lose_nothing(redis_server: RedisServer, r: Any) -> None:
    ids = await add(r, 2000)

    async def slowly(value: Any) -> Any:
        await asyncio.sleep(0.0005)
        return value

    src = source(redis_server, timeout=0.3, block=0.1, retry={"backoff": 0.05, "max_backoff": 0.2})
    running = asyncio.create_task(run([], slowly, source=src))
    while src.acked < 200:
        await asyncio.sleep(0.01)
    # entries delivered to the source's consumer whose answer was lost (as when a read times out after
    # the server ran it): pending, seen by no one
    lost = [entry_id for entry_id, _ in (await r.xreadgroup("g", "c1", {"orders": ">"}, count=10))[0][1]]
    await r.client_pause(1500, all=True)      # every read times out for 1.5 s, then the source reads again
    _, out, _ = await running
    got = [m.header("redis.id") for m in out.messages]
    # nothing lost and nothing left pending; at-least-once: the pending entries read again after the outage
    # may include some the source had already emitted but not yet acknowledged (seen once: 50 of 2000)
    assert set(got) == set(ids) and await pending(r) == []
    assert src.ctx is not None and src.ctx.stats.retries >= 1
    assert set(lost) <= set(got) and src.replayed == 10     # read again from the pending list after the outage
