"""HTTP sink against a real local server: retries lose nothing, refusals are dead-lettered, secrets stay secret."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.connectors.http_sink import HttpSink, retry_after_seconds
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.errors import PipelineFailed
from streamflow.core.runner import EXIT_FAILED, EXIT_OK, Runner

Handler = Callable[[web.Request], Awaitable[web.Response]]

FAST_RETRY = {"backoff": 0.001, "max_backoff": 0.01}


class Endpoint:
    """A local aiohttp server recording every request; ``respond`` decides each answer."""

    def __init__(self, respond: Callable[[int, bytes], web.Response | None] | None = None,
                 delay: float = 0.0) -> None:
        self.respond = respond or (lambda attempt, body: None)
        self.delay = delay
        self.attempts = 0
        self.accepted: list[bytes] = []
        self.content_types: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = self.max_in_flight = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        attempt = self.attempts
        body = await request.read()
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            answer = self.respond(attempt, body)
            if answer is not None:
                return answer
            self.accepted.append(body)
            self.content_types.append(request.content_type)
            return web.json_response({"ok": True})
        finally:
            self.in_flight -= 1

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/events", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/events"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def events(self) -> list[Any]:
        out: list[Any] = []
        for body in self.accepted:
            out.extend(orjson.loads(body))
        return out


def ids(n: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(n)]


async def run(pipeline: Pipeline) -> Any:
    return await Runner(pipeline, handle_signals=False).run()


async def test_server_errors_are_retried_and_nothing_is_lost() -> None:
    def respond(attempt: int, body: bytes) -> web.Response | None:
        if attempt <= 3:
            return web.Response(status=500, text="database down")
        if attempt == 4:
            return web.Response(status=429, headers={"Retry-After": "0"})
        return None

    server = Endpoint(respond)
    url = await server.start()
    try:
        src = MemorySource(values=ids(100), batch_size=10)
        sink = HttpSink(url=url)
        result = await run(Pipeline("out", sink_retry=FAST_RETRY).source(src).sink(sink))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_OK
    assert server.events() == ids(100)  # exact content, in order, no duplicates
    assert len(server.accepted) == 10 and server.content_types == ["application/json"] * 10
    assert result.stats[-1].retries == 4 and result.stats[-1].errors == 0
    assert src.committed == {0: 100}


async def test_jsonl_format_and_secret_headers(caplog: pytest.LogCaptureFixture) -> None:
    server = Endpoint(lambda attempt, body: web.Response(status=503) if attempt == 1 else None)
    url = await server.start()
    caplog.set_level(logging.DEBUG)
    try:
        sink = HttpSink(url=url, framing="newline", headers={"Authorization": "Bearer t0ps3cret"})
        result = await run(Pipeline("out", sink_retry=FAST_RETRY)
                           .source(MemorySource(values=ids(5), batch_size=5)).sink(sink))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_OK
    assert server.accepted == [b"".join(orjson.dumps(v) + b"\n" for v in ids(5))]
    assert server.content_types == ["application/x-ndjson"]
    assert all(h["Authorization"] == "Bearer t0ps3cret" for h in server.headers)
    assert "retry 1" in caplog.text  # the retry was logged …
    assert "t0ps3cret" not in caplog.text and "t0ps3cret" not in repr(sink.config)  # … the secret never


async def test_refused_batch_goes_to_the_dead_letter_sink() -> None:
    def respond(attempt: int, body: bytes) -> web.Response | None:
        if {"id": 13} in orjson.loads(body):
            return web.Response(status=400, text="id 13 is poison")
        return None

    server = Endpoint(respond)
    url = await server.start()
    try:
        src = MemorySource(values=ids(50), batch_size=10)
        dlq = MemorySink(name="dlq")
        result = await run(Pipeline("out").source(src).sink(HttpSink(url=url, name="api")).dead_letter(dlq))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_OK
    assert server.events() == [v for v in ids(50) if not 10 <= v["id"] < 20]
    assert [r["payload"] for r in dlq.values] == ids(50)[10:20]
    record = dlq.values[0]
    assert record["stage"] == "api" and record["error"] == "HttpStatusError: HTTP 400: id 13 is poison"
    assert record["source"] == {"topic": "memory", "partition": 0, "offset": 10}
    assert result.dead_lettered == 10 and src.committed == {0: 50}  # dead-lettered counts as handled


async def test_refused_batch_without_dead_letter_fails_the_pipeline() -> None:
    server = Endpoint(lambda attempt, body: web.Response(status=422) if attempt == 2 else None)
    url = await server.start()
    try:
        src = MemorySource(values=ids(50), batch_size=10)
        result = await run(Pipeline("out").source(src).sink(HttpSink(url=url)))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_FAILED and isinstance(result.error, PipelineFailed)
    assert "HTTP 422" in str(result.error)
    assert server.events() == ids(10)
    assert src.committed.get(0, 0) <= 10  # the refused batch is not committed


async def test_connection_errors_are_retried_until_the_server_comes_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Endpoint()
    src = MemorySource(values=ids(20), batch_size=10)
    sink = HttpSink(url=f"http://127.0.0.1:{port}/events", timeout=2)
    runner = Runner(Pipeline("out", sink_retry=FAST_RETRY).source(src).sink(sink), handle_signals=False)
    task = asyncio.create_task(runner.run())
    for _ in range(1000):
        if runner.stats.get(sink.name) and runner.stats[sink.name].retries >= 2:
            break
        await asyncio.sleep(0.01)
    assert runner.stats[sink.name].retries >= 2 and not server.accepted
    await server.start(port)
    try:
        result = await task
    finally:
        await server.stop()
    assert result.exit_code == EXIT_OK and server.events() == ids(20)


async def test_gives_up_after_max_attempts() -> None:
    server = Endpoint(lambda attempt, body: web.Response(status=502))
    url = await server.start()
    try:
        src = MemorySource(values=ids(10))
        result = await run(Pipeline("out", sink_retry={**FAST_RETRY, "max_attempts": 3})
                           .source(src).sink(HttpSink(url=url)))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_FAILED and "failed 3 times" in str(result.error)
    assert server.attempts == 3 and src.committed == {}


async def test_concurrent_batches_are_bounded_and_all_delivered() -> None:
    server = Endpoint(lambda attempt, body: web.Response(status=500) if attempt % 7 == 0 else None,
                      delay=0.02)
    url = await server.start()
    try:
        src = MemorySource(values=ids(200), batch_size=10)
        result = await run(Pipeline("out", sink_retry=FAST_RETRY).source(src)
                           .sink(HttpSink(url=url, concurrency=4)))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_OK
    assert sorted(v["id"] for v in server.events()) == list(range(200))
    assert 1 < server.max_in_flight <= 4
    assert src.committed == {0: 200}


async def test_concurrent_refusal_without_dead_letter_fails_the_pipeline() -> None:
    server = Endpoint(lambda attempt, body: web.Response(status=400) if {"id": 55} in orjson.loads(body)
                      else None)
    url = await server.start()
    try:
        src = MemorySource(values=ids(100), batch_size=10)
        result = await run(Pipeline("out").source(src).sink(HttpSink(url=url, concurrency=3)))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_FAILED and "HTTP 400" in str(result.error)
    assert src.committed.get(0, 0) <= 50


def test_config() -> None:
    with pytest.raises(ValidationError):
        HttpSink(url="ftp://example.com/x")
    with pytest.raises(ValidationError):
        HttpSink(url="http://example.com/x", format="xml")
    with pytest.raises(ValidationError) as info:
        HttpSink(url="https://user:pw@/x?token=abc")
    assert "pw" not in str(info.value).replace("pydantic", "") and "abc" not in str(info.value)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("999999") == 300.0
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50 < (retry_after_seconds(later) or 0) <= 60
    assert retry_after_seconds(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


@pytest.mark.parametrize("options, body, content_type", [
    ({"codec": "csv", "framing": "newline"}, b"id\n0\n1\n", "text/csv"),
    ({"codec": "text", "framing": "newline", "content_type": "text/x-ids"}, b'{"id":0}\n{"id":1}\n',
     "text/x-ids"),
    ({"format": "jsonl"}, b'{"id":0}\n{"id":1}\n', "application/x-ndjson"),
    ({"format": "json_array"}, b'[{"id":0},{"id":1}]', "application/json"),
])
async def test_body_is_the_codec_joined_by_the_framing(options: dict[str, Any], body: bytes,
                                                       content_type: str) -> None:
    server = Endpoint()
    url = await server.start()
    try:
        result = await run(Pipeline("out").source(MemorySource(values=ids(2), batch_size=2))
                           .sink(HttpSink(url=url, **options)))
    finally:
        await server.stop()
    assert result.exit_code == EXIT_OK
    assert server.accepted == [body] and server.content_types == [content_type.split(";")[0]]


def test_format_is_a_deprecated_alias_that_says_what_to_write(caplog: pytest.LogCaptureFixture) -> None:
    sink = HttpSink(url="http://example.com/x", format="jsonl")
    assert (sink.config.codec, sink.config.framing) == ("json", "newline")
    assert "write `codec: json` and `framing: newline`" in caplog.text
    with pytest.raises(ValidationError, match="give only those"):
        HttpSink(url="http://example.com/x", format="jsonl", framing="newline")


class _OneBatchThenIdle(MemorySource):
    """Emits its values once, then waits for more that never come (an idle stream)."""

    async def read(self) -> Any:
        batch = await super().read()
        if batch is None:
            await asyncio.Event().wait()
        return batch


async def test_a_background_delivery_that_gives_up_fails_the_pipeline_at_once() -> None:
    """With concurrency > 1 the POSTs run in tasks; exhausting sink_retry must not wait for another write."""
    server = Endpoint(lambda attempt, body: web.Response(status=503))
    url = await server.start()
    src = _OneBatchThenIdle(values=ids(4), batch_size=4)
    try:
        pipeline = (Pipeline("out", sink_retry={"backoff": 0, "max_attempts": 2})
                    .source(src).sink(HttpSink(url=url, concurrency=2)))
        result = await asyncio.wait_for(run(pipeline), timeout=60)  # a bound, not a timing claim
    finally:
        await server.stop()
    assert result.exit_code == EXIT_FAILED
    assert "failed 2 times" in result.reason
    assert src.committed == {}
