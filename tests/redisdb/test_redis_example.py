"""pipelines/redis_orders.yaml with `streamflow run` against a real redis-server: as the README runs it, and
through kill -9 — the entries a killed run left pending are read again by the next, nothing is lost."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson

from .server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipelines/redis_orders.yaml"


def environment(server: RedisServer, tmp_path: Path) -> dict[str, str]:
    assert server.password is not None
    return {"REDIS_URL": server.url, "REDIS_PASSWORD": server.password, "CONSUMER": "worker-1",
            "OUTPUT_FILE": str(tmp_path / "out.jsonl"), "DEAD_LETTER_FILE": str(tmp_path / "dead.jsonl")}


def lines(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a line cut by kill -9 is left out."""
    out = []
    for line in path.read_bytes().splitlines() if path.exists() else []:
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass
    return out


async def until(condition: Any, timeout: float = 120.0) -> None:
    """Wait until the (async) ``condition()`` holds."""
    for _ in range(int(timeout / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


async def test_redis_orders_yaml_as_the_readme_runs_it(redis_server: RedisServer, r: Any, pipeline_process: Any,
                                                       tmp_path: Path) -> None:
    with open(ROOT / "pipelines/data/redis_orders.redis", "rb") as commands:  # redis-cli < the file
        subprocess.run(["redis-cli", "-p", str(redis_server.port), "-a", str(redis_server.password),
                        "--no-auth-warning"], stdin=commands, check=True, capture_output=True)
    proc = pipeline_process(PIPELINE, cwd=ROOT, **environment(redis_server, tmp_path)).start()

    async def done() -> bool:
        return len(lines(tmp_path / "out.jsonl")) == 4 and (await r.xpending("orders", "redis-orders"))[
            "pending"] == 0
    await until(done)
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()
    out = lines(tmp_path / "out.jsonl")
    assert [o["order_id"] for o in out] == ["1", "2", "3", "4"]
    assert out[1] == {"order_id": "2", "customer": "c2", "amount": "3.10", "customer_name": "Grace",
                      "customer_tier": "silver"}
    assert orjson.loads(await r.get("last-order:c1"))["order_id"] == "4"
    assert 3590 < await r.ttl("last-order:c1") <= 3600
    dead = lines(tmp_path / "dead.jsonl")
    assert [d["payload"]["customer"] for d in dead] == ["c9"] and "LookupMissing" in dead[0]["error"]


N = 20_000


async def test_kill_9_and_restart_re_reads_pending_entries_and_loses_nothing(
        redis_server: RedisServer, r: Any, pipeline_process: Any, tmp_path: Path) -> None:
    await r.hset("customer:c0", mapping={"name": "Ada", "tier": "gold"})
    for start in range(0, N, 1000):
        async with r.pipeline(transaction=False) as pipe:
            for i in range(start, start + 1000):
                pipe.xadd("orders", {"order_id": i, "customer": "c0"})
            await pipe.execute()
    out = tmp_path / "out.jsonl"
    proc = pipeline_process(PIPELINE, cwd=ROOT, **environment(redis_server, tmp_path))
    left_pending: list[tuple[int, set[int]]] = []   # per kill: output lines then, and the order ids pending
    for _ in range(3):
        before = len(lines(out))
        proc.start()

        async def grew(before: int = before) -> bool:
            return len(lines(out)) >= before + 1500 or not proc.running
        await until(grew)
        assert proc.running, proc.tail()
        proc.kill()
        entries = await r.xpending_range("orders", "redis-orders", "-", "+", N)
        ids = [e["message_id"] for e in entries]
        pending = {int(v[b"order_id"]) for i in ids for _, v in await r.xrange("orders", i, i)}
        left_pending.append((len(lines(out)), pending))
    proc.start()

    async def all_done() -> bool:
        return len({o["order_id"] for o in lines(out)}) == N and \
            (await r.xpending("orders", "redis-orders"))["pending"] == 0
    await until(all_done)
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    written = [int(o["order_id"]) for o in lines(out)]
    assert set(written) == set(range(N))                                      # nothing lost
    assert all(o["customer_name"] == "Ada" for o in lines(out))
    assert any(pending for _, pending in left_pending), "no kill left entries pending"
    for at, pending in left_pending:   # what a kill left pending was written again by a later run
        assert pending <= set(written[at:])
    assert "pending entries of orders read again" in proc.log.read_text()
    print(f"\nkill -9: {len(left_pending)} kills, pending at each: {[len(p) for _, p in left_pending]}, "
          f"{len(written)} records for {N} entries")
