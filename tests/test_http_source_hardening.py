"""HTTP source as something to expose: TLS/mTLS, signatures, rate and connection limits, deadlines,
content rules and a byte budget — each against a real server on 127.0.0.1 and real clients."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError
from test_http_source import NDJSON, Harness, LogSink, lines
from tls_certs import Certs, make_certs

from streamflow.connectors.http_source import HttpSource
from streamflow.connectors.memory import MemorySink
from streamflow.observability.metrics import PipelineMetrics
from streamflow.security.signatures import sign


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def tls(certs: Certs, mutual: bool = False) -> dict[str, Any]:
    return {"tls": {"certfile": str(certs.server), "keyfile": str(certs.server_key),
                    **({"client_cafile": str(certs.ca)} if mutual else {})}}


async def post(h: Harness, body: bytes, *, scheme: str = "http", ssl_ctx: ssl.SSLContext | None = None,
               content_type: str = NDJSON, headers: dict[str, str] | None = None
               ) -> tuple[int, Any, dict[str, str]]:
    """POST with a fresh connection each time (so TLS handshakes happen per call)."""
    url = f"{scheme}://127.0.0.1:{h.source.port}/ingest"
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, ssl=ssl_ctx if ssl_ctx is not None else False,
            headers={"Content-Type": content_type, **(headers or {})}) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


def http_responses(h: Harness) -> dict[str, float]:
    """``streamflow_http_responses_total`` by code, scraped the way Prometheus would."""
    text = generate_latest(PipelineMetrics.for_runner(h.runner).registry).decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("streamflow_http_responses_total{"):
            code = line.split('code="')[1].split('"')[0]
            out[code] = float(line.rsplit(" ", 1)[1])
    return out


async def raw_exchange(port: int, data: bytes, wait: float = 10.0) -> bytes:
    """Send ``data`` on a plain socket and read until the server closes it (or ``wait`` runs out)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


# -- TLS ------------------------------------------------------------------------------------------
async def test_tls_serves_https_and_refuses_plain_http(certs: Certs) -> None:
    sink = MemorySink()
    async with Harness(sink, **tls(certs)) as h:
        status, body, _ = await post(h, lines([1]), scheme="https", ssl_ctx=certs.client_context(False))
        assert (status, body) == (200, {"accepted": 1})
        with pytest.raises(aiohttp.ClientError):
            await post(h, lines([2]))  # plain HTTP to a TLS port never gets an answer
    assert sink.values == [{"id": 1}]


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(certs: Certs, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")  # a client certificate from a CA the server does not trust
    stranger = ssl.create_default_context(cafile=str(certs.ca))
    stranger.load_cert_chain(str(other.client), str(other.client_key))
    sink = MemorySink()
    async with Harness(sink, **tls(certs, mutual=True)) as h:
        for ctx in (certs.client_context(with_cert=False), stranger):
            with pytest.raises(aiohttp.ClientError):
                await post(h, lines([1]), scheme="https", ssl_ctx=ctx)
        status, _, _ = await post(h, lines([2]), scheme="https", ssl_ctx=certs.client_context())
        assert status == 200
    assert sink.values == [{"id": 2}]


def test_unreadable_certificate_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    src = HttpSource(port=0, tls={"certfile": str(tmp_path / "bad.pem")})
    assert src.config.tls is not None
    with pytest.raises(ValueError, match="cannot load TLS certificate .*bad.pem"):
        src.config.tls.context()


# -- signatures --------------------------------------------------------------------------------------
async def test_hmac_signature_with_timestamp_refuses_wrong_stale_and_replayed() -> None:
    sink = MemorySink()
    cfg = {"secret": "whsec", "header": "X-Hub-Signature-256", "timestamp_header": "X-Timestamp",
           "tolerance": 60}
    async with Harness(sink, signature=cfg) as h:
        def signed(body: bytes, stamp: float, secret: str = "whsec") -> dict[str, str]:
            ts = str(int(stamp))
            return {"X-Timestamp": ts, "X-Hub-Signature-256": sign(secret, body, ts, "{timestamp}.{body}")}

        body = lines([1])
        now = time.time()
        assert (await post(h, body))[0] == 401                                        # unsigned
        assert (await post(h, body, headers=signed(body, now, "wrong")))[0] == 401    # wrong secret
        assert (await post(h, body, headers=signed(body, now - 600)))[0] == 401       # stale
        good = signed(body, now)
        assert (await post(h, lines([9]), headers=good))[0] == 401                    # other body
        assert (await post(h, body, headers=good))[0] == 200
        status, answer, _ = await post(h, body, headers=good)                          # replayed
        assert status == 401 and "replay" in answer["error"]
        assert http_responses(h) == {"200": 1, "401": 5}
    assert sink.values == [{"id": 1}]
    assert "whsec" not in repr(h.source.config)


async def test_github_style_signature_over_the_body_only() -> None:
    sink = MemorySink()
    async with Harness(sink, signature={"secret": "gh", "header": "X-Hub-Signature-256"}) as h:
        body = b'{"id": 7}'
        headers = {"X-Hub-Signature-256": sign("gh", body)}
        assert (await post(h, body, content_type="application/json", headers=headers))[0] == 200
    assert sink.values == [{"id": 7}]


def test_signature_template_must_end_with_the_body() -> None:
    with pytest.raises(ValidationError, match="end with"):
        HttpSource(signature={"secret": "s", "template": "{body}.{timestamp}", "timestamp_header": "T"})
    with pytest.raises(ValidationError, match="go together"):
        HttpSource(signature={"secret": "s", "template": "{timestamp}.{body}"})


# -- rate and connection limits, deadlines ----------------------------------------------------------
async def test_rate_limit_per_client_answers_429_with_retry_after() -> None:
    sink = MemorySink()
    async with Harness(sink, rate_limit={"per_second": 0.01, "burst": 2}) as h:
        answers = [await post(h, lines([i])) for i in range(4)]
    assert [a[0] for a in answers] == [200, 200, 429, 429]
    assert int(answers[2][2]["Retry-After"]) >= 1
    assert sink.values == [{"id": 0}, {"id": 1}]


async def test_connections_over_the_cap_are_answered_503_and_closed() -> None:
    sink = MemorySink()
    async with Harness(sink, max_connections=2) as h:
        assert h.source.port is not None
        held = [await asyncio.open_connection("127.0.0.1", h.source.port) for _ in range(2)]
        answer = await raw_exchange(h.source.port, b"")
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
        for _, writer in held:
            writer.close()
        for _ in range(200):  # the server notices the closed connections
            if not h.source._guard or not h.source._guard.connections:
                break
            await asyncio.sleep(0.01)
        assert (await post(h, lines([1])))[0] == 200
        assert http_responses(h) == {"200": 1, "503": 1}
    assert sink.values == [{"id": 1}]


async def test_slow_headers_get_408_and_idle_connections_are_closed() -> None:
    async with Harness(MemorySink(), header_timeout=0.2) as h:
        assert h.source.port is not None
        slow = await raw_exchange(h.source.port, b"POST /ingest HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert slow.startswith(b"HTTP/1.1 408")
        idle = await raw_exchange(h.source.port, b"")
        assert idle == b""  # closed without a word
        assert h.source.responses["408"] == 1


async def test_a_body_slower_than_body_timeout_gets_408_and_nothing_is_ingested() -> None:
    sink = MemorySink()
    async with Harness(sink, body_timeout=0.2) as h:
        assert h.source.port is not None
        head = (f"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: {NDJSON}\r\n"
                f"Content-Length: 100\r\n\r\n").encode()
        answer = await raw_exchange(h.source.port, head + b'{"id": 1}\n')
        assert answer.startswith(b"HTTP/1.1 408")
        assert h.source.budget.used == 0  # the reservation was given back
    assert sink.values == []


async def test_a_client_going_away_mid_body_is_counted_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    async with Harness(sink) as h:
        assert h.source.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", h.source.port)
        writer.write(f"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: {NDJSON}\r\n"
                     f"Content-Length: 1000\r\n\r\n".encode() + b'{"id": 1}\n')
        await writer.drain()
        writer.close()
        for _ in range(500):
            if h.source.responses:
                break
            await asyncio.sleep(0.01)
        assert (await post(h, lines([2])))[0] == 200
        assert h.source.budget.used == 0
    assert h.source.responses["499"] == 1
    assert sink.values == [{"id": 2}]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- content rules ---------------------------------------------------------------------------------
async def test_non_object_json_is_rejected_whole_by_default() -> None:
    sink = MemorySink()
    async with Harness(sink) as h:
        for body in (b"null", b"42", b'[{"id": 1}, "x"]'):
            status, answer, _ = await post(h, body, content_type="application/json")
            assert status == 422 and "not a JSON object" in answer["error"]
        status, answer, _ = await post(h, b'{"id": 1}\n7\n')
        assert status == 422 and "event 2" in answer["error"]
        assert (await post(h, b"x=1", content_type="application/x-www-form-urlencoded"))[0] == 415
    assert sink.values == []


async def test_non_object_json_can_be_wrapped_or_accepted() -> None:
    wrapped, accepted = MemorySink(), MemorySink()
    async with Harness(wrapped, non_object="wrap") as h:
        assert (await post(h, b'[null, 42, {"id": 1}]', content_type="application/json"))[0] == 200
    async with Harness(accepted, non_object="accept") as h:
        assert (await post(h, b"42", content_type="application/json"))[0] == 200
    assert wrapped.values == [{"value": None}, {"value": 42}, {"id": 1}]
    assert accepted.values == [42]


# -- the byte budget ---------------------------------------------------------------------------------
async def test_bodies_are_reserved_against_the_byte_budget_before_they_are_read() -> None:
    log: list[tuple[str, Any]] = []
    sink = LogSink(log, open_gate=False)
    body = lines(range(60))  # ~600 bytes
    async with Harness(sink, max_body_bytes=len(body), max_inflight_bytes=len(body) + 100, timeout=0.2) as h:
        first = asyncio.create_task(post(h, body))
        await sink.entered.wait()                  # held by the sink: its bytes are still reserved
        assert h.source.budget.used == len(body)
        second = asyncio.create_task(post(h, lines([1000]) * 20))
        while len(h.source.budget._waiters) == 0:
            await asyncio.sleep(0.01)
        guard = h.source._guard
        assert guard is not None and any(not t.is_reading() for t in guard.connections)  # type: ignore[attr-defined]
        status, answer, headers = await second  # no room within `timeout`
        assert status == 503 and "in flight" in answer["error"] and headers["Retry-After"] == "1"
        sink.gate.set()
        assert (await first)[0] == 200
        assert h.source.budget.used == 0
        assert (await post(h, lines([1000]) * 20))[0] == 200
        assert http_responses(h) == {"200": 2, "503": 1}
    assert len(sink.values) == 80


async def test_a_chunked_body_reserves_the_largest_body_until_its_size_is_known() -> None:
    log: list[tuple[str, Any]] = []
    sink = LogSink(log, open_gate=False)
    async with Harness(sink, max_body_bytes=1000, max_inflight_bytes=1500, timeout=0.2) as h:
        async def chunks() -> Any:
            yield lines([1])

        url = f"http://127.0.0.1:{h.source.port}/ingest"
        async with aiohttp.ClientSession() as session:
            pending = asyncio.create_task(session.post(url, data=chunks(), headers={"Content-Type": NDJSON}))
            await sink.entered.wait()
            assert h.source.budget.used == len(lines([1]))  # the rest of the 1000 given back once read
            sink.gate.set()
            async with await pending as resp:
                assert resp.status == 200


def test_one_body_must_fit_the_budget() -> None:
    with pytest.raises(ValidationError, match="must not exceed max_inflight_bytes"):
        HttpSource(max_body_bytes=2000, max_inflight_bytes=1000)

