"""What the Redis tests share: the connection keys of the test server, a pipeline runner, server counters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import EXIT_OK, Runner

from .server import RedisServer


def connection(server: RedisServer) -> dict[str, Any]:
    """The connection keys of a component reaching ``server``."""
    return {"url": server.url, "password": server.password}


async def run(values: list[Any], *stages: dict[str, Any] | Callable[[Any], Any], sink: Any = None, source: Any = None,
              batch_size: int = 100, expect: int = EXIT_OK) -> tuple[Any, MemorySink, MemorySink]:
    """Run ``values`` (or ``source``) through ``stages`` (configs, or functions to map with) into ``sink``:
    the source, the output and the dead letters."""
    src = source or MemorySource(values=values, batch_size=batch_size)
    out, dlq = sink or MemorySink(name="out"), MemorySink(name="dlq")
    p = Pipeline("redis", sink_retry={"backoff": 0.05, "max_backoff": 0.2}, commit_interval=0.05).source(src)
    for stage in stages:
        if callable(stage):
            p = p.map(stage)
        else:
            options = dict(stage)
            p = p.transform(options.pop("type"), **options)
    result = await Runner(p.sink(out).dead_letter(dlq), handle_signals=False).run()
    assert result.exit_code == expect, result
    return src, out, dlq


async def command_calls(r: Any, command: str) -> int:
    """Times the server ran ``command`` since its stats were reset (INFO commandstats)."""
    stats = await r.info("commandstats")
    return int(stats.get(f"cmdstat_{command.lower()}", {}).get("calls", 0))


async def reads(r: Any) -> int:
    """Reads of client sockets the server made (INFO stats): one per round trip of a small request."""
    return int((await r.info("stats"))["total_reads_processed"])
