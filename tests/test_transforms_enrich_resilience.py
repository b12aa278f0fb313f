"""enrich with `url` against a flaky service on loopback: timeouts, Retry-After, which statuses are
retried, concurrent retries, a circuit breaker, and URLs that never show their query string."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.transforms.enrich import Enrich

SECRET = "k3y-do-not-show"


@dataclass
class Service:
    """A lookup service whose answer per request is chosen by the test: ``answer(key, attempt)``."""

    answer: Callable[[str, int], web.StreamResponse | None] = lambda key, attempt: None
    hits: dict[str, list[float]] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    retries_in_flight: int = 0
    max_retries_in_flight: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        self.hits.setdefault(key, []).append(time.monotonic())
        retry = len(self.hits[key]) > 1
        self.in_flight += 1
        self.retries_in_flight += retry
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_retries_in_flight = max(self.max_retries_in_flight, self.retries_in_flight)
        try:
            await asyncio.sleep(0.02)
            if key == "hang":
                await asyncio.sleep(60)
            answer = self.answer(key, len(self.hits[key]))
            return answer if answer is not None else web.json_response({"name": f"n-{key}"})
        finally:
            self.in_flight -= 1
            self.retries_in_flight -= retry


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    svc = Service()
    app = web.Application()
    app.router.add_get("/things/{key}", svc.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    svc.url = f"http://user:pw@127.0.0.1:{port}/things/{{key}}?api_key={SECRET}"
    yield svc
    await runner.cleanup()


async def run(svc: Service, keys: list[str], **enrich: Any) -> tuple[MemorySink, MemorySink, Runner]:
    src = MemorySource(values=[{"k": k} for k in keys], batch_size=len(keys))
    out, dlq = MemorySink(name="out"), MemorySink(name="dlq")
    options = {"url": svc.url, "key": "k", "on_error": "dead_letter", **enrich}
    runner = Runner(Pipeline("lookups").source(src).enrich(**options).sink(out).dead_letter(dlq),
                    handle_signals=False)
    result = await runner.run()
    assert result.exit_code == EXIT_OK
    return out, dlq, runner


def test_every_url_lookup_has_a_default_timeout() -> None:
    assert Enrich(url="http://127.0.0.1/x/{key}", key="id").config.timeout == 10.0
    assert Enrich(fn="json:dumps").config.timeout is None  # a function's calls are the user's to bound


async def test_a_hung_service_times_out_into_the_error_policy(service: Service) -> None:
    out, dlq, _ = await run(service, ["a", "hang"], timeout=0.2, retry={"max_attempts": 2, "backoff": 0})
    assert [v["k"] for v in out.values] == ["a"]
    [dead] = dlq.values
    assert "no answer within 0.2s" in dead["error"] and len(service.hits["hang"]) == 2


async def test_retry_after_is_honoured(service: Service) -> None:
    service.answer = lambda key, n: web.Response(status=429, headers={"Retry-After": "1"}) if n == 1 else None
    out, dlq, runner = await run(service, ["a"], retry={"backoff": 0.01, "max_attempts": 3})
    first, second = service.hits["a"]
    assert second - first >= 0.95  # waited as asked, not the 10 ms backoff
    assert out.values == [{"k": "a", "name": "n-a"}] and dlq.values == []
    assert runner.stats["enrich"].retries == 1


async def test_client_errors_are_not_retried_server_errors_are(service: Service) -> None:
    statuses = {"bad": 400, "gone": 410, "down": 503, "teapot": 418}
    service.answer = lambda key, n: web.Response(status=statuses[key]) if key in statuses else None
    out, dlq, _ = await run(service, ["bad", "gone", "down", "teapot", "ok"],
                            retry={"backoff": 0.01, "max_attempts": 3}, retry_statuses=[418, "5xx"])
    assert {k: len(v) for k, v in service.hits.items()} == {"bad": 1, "gone": 1, "down": 3, "teapot": 3,
                                                            "ok": 1}
    assert [v["k"] for v in out.values] == ["ok"]
    errors = {d["payload"]["k"]: d["error"] for d in dlq.values}
    assert "answered 400" in errors["bad"] and "answered 503" in errors["down"]
    assert "after 3 attempts" in errors["down"]


async def test_retries_of_a_batch_run_concurrently(service: Service) -> None:
    service.answer = lambda key, n: web.Response(status=503) if n == 1 else None
    keys = [str(i) for i in range(20)]
    out, dlq, _ = await run(service, keys, concurrency=20, retry={"backoff": 0.2, "max_attempts": 2})
    assert len(out.values) == 20 and dlq.values == []
    assert all(len(service.hits[k]) == 2 for k in keys)
    assert service.max_retries_in_flight > 1  # the retries were in flight together, not one by one


async def test_circuit_breaker_stops_calling_a_dead_service(service: Service) -> None:
    service.answer = lambda key, n: web.Response(status=500)
    keys = [str(i) for i in range(10)]
    out, dlq, _ = await run(service, keys, retry={"max_attempts": 1},
                            breaker={"failures": 3, "open_seconds": 60})
    assert out.values == [] and len(dlq.values) == 10
    assert sum(len(v) for v in service.hits.values()) == 3
    assert sum("circuit open" in d["error"] for d in dlq.values) == 7


async def test_urls_never_show_credentials_or_query_strings(service: Service,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    service.answer = lambda key, n: web.Response(status=500)
    with caplog.at_level(logging.DEBUG):
        _, dlq, _ = await run(service, ["a"], retry={"max_attempts": 2, "backoff": 0})
        _, refused, _ = await run(Service(url=f"http://127.0.0.1:1/x/{{key}}?api_key={SECRET}"), ["b"],
                                  retry={"max_attempts": 1})
    records = [str(d) for d in dlq.values + refused.values]
    assert "/things/a?… answered 500" in records[0] and "127.0.0.1:1/x/b?…" in records[1]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("streamflow"))
    assert "answered 500" in logged
    for text in [*records, logged]:
        assert SECRET not in text and "user:pw" not in text
