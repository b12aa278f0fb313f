"""HTTP source: answered only once acknowledged, backpressure to the client, bad input rejected whole."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.connectors.http_source import HttpSource, parse_body
from streamflow.connectors.memory import MemorySink
from streamflow.core.batch import Batch
from streamflow.core.runner import EXIT_OK, Runner, RunResult
from streamflow.core.stage import Sink

NDJSON = "application/x-ndjson"


class LogSink(Sink):
    """Records each write in ``log`` (shared with the client); blocks while ``gate`` is clear."""

    def __init__(self, log: list[tuple[str, Any]], open_gate: bool = True) -> None:
        super().__init__(name="log")
        self.log = log
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.entered = asyncio.Event()
        self.values: list[Any] = []

    async def write(self, batch: Batch) -> None:
        self.entered.set()
        await self.gate.wait()
        self.values.extend(m.value for m in batch.messages)
        self.log.append(("written", [m.value["id"] for m in batch.messages]))


class Harness:
    """An HTTP source pipeline running in this loop, plus a client."""

    def __init__(self, sink: Sink, channel: int = 8, **source: Any) -> None:
        self.source = HttpSource(port=0, path="/ingest", **source)
        self.sink = sink
        self.runner = Runner(Pipeline("hook", channel={"max_batches": channel}).source(self.source).sink(sink),
                             handle_signals=False)
        self.task: asyncio.Task[RunResult] | None = None
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Harness:
        self.task = asyncio.create_task(self.runner.run())
        for _ in range(1000):
            if self.source.ready:
                break
            await asyncio.sleep(0.01)
        assert self.source.ready and self.runner.state == "running"
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None and self.task is not None
        await self.session.close()
        self.runner.stop()
        self.result = await self.task

    async def post(self, body: bytes | str, content_type: str = NDJSON,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        assert self.session is not None
        hdrs = {"Content-Type": content_type, **(headers or {})}
        url = f"http://127.0.0.1:{self.source.port}/ingest"
        async with self.session.post(url, data=body, headers=hdrs) as resp:
            return resp.status, await resp.json(), dict(resp.headers)


def lines(ids: range | list[int]) -> bytes:
    return b"".join(orjson.dumps({"id": i}) + b"\n" for i in ids)


async def test_200_only_after_the_sink_wrote_every_event() -> None:
    log: list[tuple[str, Any]] = []
    sink = LogSink(log, open_gate=False)
    async with Harness(sink) as h:
        async def client() -> None:
            status, body, _ = await h.post(lines(range(10)))
            log.append(("answered", (status, body)))

        request = asyncio.create_task(client())
        await sink.entered.wait()  # the sink holds the batch, not yet durable
        await asyncio.wait([request], timeout=0.3)
        assert not request.done(), "answered before the sink wrote the events"
        sink.gate.set()
        await request
    assert log == [("written", list(range(10))), ("answered", (200, {"accepted": 10}))]
    assert h.result.exit_code == EXIT_OK


async def test_json_single_event_array_and_lines() -> None:
    sink = MemorySink()
    async with Harness(sink) as h:
        assert (await h.post(b'{"id": 1}', "application/json"))[:2] == (200, {"accepted": 1})
        assert (await h.post(b'[{"id": 2}, {"id": 3}]', "application/json"))[:2] == (200, {"accepted": 2})
        assert (await h.post(b'{"id": 4}\n\n{"id": 5}\n', "text/plain"))[:2] == (200, {"accepted": 2})
        assert (await h.post(b"[]", "application/json"))[:2] == (200, {"accepted": 0})
    assert sink.values == [{"id": i} for i in range(1, 6)]
    assert [m.offset for m in sink.messages] == [0, 1, 2, 3, 4]
    assert sink.messages[3].raw == b'{"id": 4}' and all(m.timestamp for m in sink.messages)


async def test_malformed_body_is_rejected_whole() -> None:
    sink = MemorySink()
    async with Harness(sink) as h:
        status, body, _ = await h.post(b'{"id": 1}\n{"id": 2}\n{"id": \n{"id": 4}\n')
        assert status == 400 and "line 3" in body["error"]
        status, body, _ = await h.post(b"[{]", "application/json")
        assert status == 400 and "invalid JSON" in body["error"]
        status, body, _ = await h.post(b"id=1", "application/x-www-form-urlencoded")
        assert status == 415 and "Content-Type" in body["error"]
        assert (await h.post(lines([100])))[0] == 200
    assert sink.values == [{"id": 100}]  # nothing of the bad requests
    assert h.runner.stats["http"].errors == 3


async def test_body_too_large_is_413() -> None:
    sink = MemorySink()
    async with Harness(sink, max_body_bytes=100) as h:
        status, body, _ = await h.post(lines(range(50)))
        assert status == 413 and "100 bytes" in body["error"]
        assert (await h.post(lines([1])))[0] == 200
    assert sink.values == [{"id": 1}]


async def test_bearer_token() -> None:
    sink = MemorySink()
    async with Harness(sink, auth_token="s3cret") as h:
        status, _, headers = await h.post(lines([1]))
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert (await h.post(lines([2]), headers={"Authorization": "Bearer wrong"}))[0] == 401
        assert (await h.post(lines([3]), headers={"Authorization": "Bearer s3cret"}))[0] == 200
    assert sink.values == [{"id": 3}]
    assert "s3cret" not in repr(h.source.config)


async def test_backpressure_makes_requests_wait_then_503() -> None:
    log: list[tuple[str, Any]] = []
    sink = LogSink(log, open_gate=False)
    async with Harness(sink, channel=1, queue_size=1, timeout=0.2) as h:
        requests = [asyncio.create_task(h.post(lines([i]))) for i in range(12)]
        done, pending = await asyncio.wait(requests, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        rejected = [t.result() for t in done]
        # the pipeline holds a bounded number of requests; the rest waited `timeout`, then 503
        assert rejected and all(status == 503 for status, _, _ in rejected)
        assert all(headers["Retry-After"] == "1" for _, _, headers in rejected)
        sink.gate.set()
        results = await asyncio.gather(*requests)
    accepted = sorted(i for i, (status, _, _) in enumerate(results) if status == 200)
    refused = [i for i, (status, _, _) in enumerate(results) if status == 503]
    assert accepted and refused and len(accepted) + len(refused) == 12
    assert len(accepted) <= 8  # sink + channels + batches in hand + queue, never all of them
    assert sorted(v["id"] for v in sink.values) == accepted  # a 503 ingested nothing


async def test_not_acknowledged_in_time_is_504() -> None:
    log: list[tuple[str, Any]] = []
    sink = LogSink(log, open_gate=False)
    async with Harness(sink, ack_timeout=0.2) as h:
        status, body, _ = await h.post(lines([1, 2]))
        assert status == 504 and "retry" in body["error"]
        sink.gate.set()
    assert sink.values == [{"id": 1}, {"id": 2}]  # at-least-once: delivered later anyway


async def test_shutdown_answers_queued_work_and_refuses_new_requests() -> None:
    log: list[tuple[str, Any]] = []
    sink = LogSink(log, open_gate=False)
    async with Harness(sink) as h:
        first = asyncio.create_task(h.post(lines([1])))
        await sink.entered.wait()
        h.runner.stop()
        status, body, _ = await h.post(lines([2]))
        assert status == 503 and body["error"] == "shutting down"
        assert not h.source.ready
        sink.gate.set()
        assert (await first)[:2] == (200, {"accepted": 1})  # drained before the server closed
    assert sink.values == [{"id": 1}]
    assert h.result.exit_code == EXIT_OK


def test_config_is_validated_before_io() -> None:
    with pytest.raises(ValidationError):
        HttpSource(path="ingest")
    with pytest.raises(ValidationError):
        HttpSource(port=8000, unknown=1)


def test_parse_body() -> None:
    assert parse_body(b'{"a": 1}', "application/json") == ([{"a": 1}], None)
    assert parse_body(b'1\n"x"\n', "application/x-ndjson") == ([1, "x"], [b"1", b'"x"'])
