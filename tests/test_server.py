"""The operations server: /healthz, /readyz through a run's life cycle, /metrics negotiation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from restoring_stage import RestoringStage, finish

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.batch import Batch
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.core.stage import Sink, StageContext
from streamflow.observability.server import OpsServer, serve
from streamflow.state.changelog import RestoreProgress


async def get(port: int, path: str, accept: str | None = None) -> tuple[int, Any, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body, resp.headers.get("Content-Type", "")


async def until(cond: Callable[[], Any], what: str) -> None:
    for _ in range(1000):
        if await cond() if asyncio.iscoroutinefunction(cond) else cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class SlowConnectSource(MemorySource):
    """A memory source whose open() waits until ``connected`` is set (a broker coming up)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.connected = asyncio.Event()

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        await self.connected.wait()


class GateSink(Sink):
    """Blocks every write until ``gate`` is set; records what it wrote."""

    def __init__(self) -> None:
        super().__init__(name="gate")
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.values: list[Any] = []

    async def write(self, batch: Batch) -> None:
        self.entered.set()
        await self.gate.wait()
        self.values.extend(m.value for m in batch.messages)


async def test_readyz_follows_startup_running_and_draining() -> None:
    src = SlowConnectSource(values=list(range(500)), batch_size=10)
    sink = GateSink()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    runner = Runner(Pipeline("probe").source(src).sink(sink), handle_signals=False,
                    watchers=[lambda r: serve(r, "127.0.0.1", 0, on_bound=bound.set_result)])
    task = asyncio.create_task(runner.run())
    port = await bound

    # starting: the source is still connecting
    status, body, _ = await get(port, "/readyz")
    assert status == 503 and body["ready"] is False and body["state"] == "starting"
    assert "starting" in body["reason"]
    status, body, _ = await get(port, "/healthz")
    assert status == 200 and body["status"] == "ok"

    # running: connected
    src.connected.set()
    await sink.entered.wait()
    status, body, _ = await get(port, "/readyz")
    assert status == 200 and body == {"ready": True, "state": "running"}

    # draining: stop while the sink is stuck
    runner.stop()
    status, body, _ = await get(port, "/readyz")
    assert status == 503 and body["state"] == "draining"
    status, _, _ = await get(port, "/healthz")
    assert status == 200  # alive while draining

    sink.gate.set()
    result = await task
    assert result.exit_code == EXIT_OK
    assert sink.values == list(range(len(sink.values))) and sink.values
    with pytest.raises(aiohttp.ClientConnectionError):  # the watcher is gone with the run
        await get(port, "/healthz")


class FlakySink(MemorySink):
    """Reports not ready while ``connected`` is False."""

    connected = True

    @property
    def ready(self) -> bool:
        return self.connected


async def test_readyz_names_the_stage_that_is_not_connected() -> None:
    sink = FlakySink(name="warehouse", delay=0.01)
    runner = Runner(Pipeline("p").source(MemorySource(values=list(range(10_000)), batch_size=10)).sink(sink),
                    handle_signals=False)
    async with OpsServer(runner, "127.0.0.1", 0) as server:
        assert server.port
        task = asyncio.create_task(runner.run())
        await until(lambda: runner.state == "running", "running")
        sink.connected = False
        status, body, _ = await get(server.port, "/readyz")
        assert status == 503 and body["not_ready"] == ["warehouse"] and "warehouse" in body["reason"]
        sink.connected = True
        status, _, _ = await get(server.port, "/readyz")
        assert status == 200
        runner.stop()
        await task


async def test_metrics_content_negotiation_and_unknown_path() -> None:
    runner = Runner(Pipeline("p").source(MemorySource(values=[1, 2])).sink(MemorySink()), handle_signals=False)
    async with OpsServer(runner, "127.0.0.1", 0) as server:
        assert server.port
        await runner.run()
        status, text, ctype = await get(server.port, "/metrics")
        assert status == 200 and ctype.startswith("text/plain") and "streamflow_up{" in text
        status, text, ctype = await get(server.port, "/metrics", accept="application/openmetrics-text")
        assert status == 200 and ctype.startswith("application/openmetrics-text") and text.endswith("# EOF\n")
        status, _, _ = await get(server.port, "/nope")
        assert status == 404


async def test_serve_fails_loudly_when_the_port_is_taken() -> None:
    runner = Runner(Pipeline("p").source(MemorySource(values=[1])).sink(MemorySink()), handle_signals=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            await serve(runner, "127.0.0.1", taken.getsockname()[1])


async def test_readyz_is_503_while_keyed_state_restores_and_200_once_restored() -> None:
    progress = RestoreProgress("balance", 3, start=0, end=500, position=200, records=180)
    stage = RestoringStage("accounts", [progress])
    runner = Runner(Pipeline("bank").source(MemorySource(values=list(range(10_000)), batch_size=10))
                    .transform(stage).sink(MemorySink(delay=0.01)), handle_signals=False)
    async with OpsServer(runner, "127.0.0.1", 0) as server:
        assert server.port
        task = asyncio.create_task(runner.run())
        await until(lambda: runner.state == "running", "running")
        status, body, _ = await get(server.port, "/readyz")
        assert status == 503 and body["state"] == "running"
        assert body["restoring"] == ["accounts"] and body["not_ready"] == ["accounts"]
        assert body["reason"] == "restoring state: accounts"
        _, text, _ = await get(server.port, "/metrics")
        assert ('streamflow_state_restore_remaining_records{partition="3",pipeline="bank",stage="accounts",'
                'state="balance"} 300.0') in text

        finish(progress)
        status, body, _ = await get(server.port, "/readyz")
        assert status == 200 and body == {"ready": True, "state": "running"}
        _, text, _ = await get(server.port, "/metrics")
        assert ('streamflow_state_restore_remaining_records{partition="3",pipeline="bank",stage="accounts",'
                'state="balance"} 0.0') in text
        runner.stop()
        await task
