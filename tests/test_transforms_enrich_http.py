"""enrich with `url`: lookups over HTTP against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import EXIT_OK, Runner


@pytest.fixture
async def service() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """customers/{id}: 200 with a name, 404 for 'ghost', 500 for 'broken'; counts requests per id."""
    hits: dict[str, int] = {}
    in_flight = {"now": 0}

    async def customer(request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        hits[cid] = hits.get(cid, 0) + 1
        assert request.headers.get("Authorization") == "Bearer s3cret"
        in_flight["now"] += 1
        hits["_max_in_flight"] = max(hits["_max_in_flight"], in_flight["now"])
        try:
            await asyncio.sleep(0.005)
        finally:
            in_flight["now"] -= 1
        if cid == "ghost":
            raise web.HTTPNotFound()
        if cid == "broken":
            raise web.HTTPInternalServerError()
        return web.json_response({"name": f"customer {cid}", "tier": "gold"})

    app = web.Application()
    app.router.add_get("/customers/{cid}", customer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    hits["_max_in_flight"] = 0
    yield f"http://127.0.0.1:{port}/customers/{{key}}", hits
    await runner.cleanup()


async def test_http_lookup_merges_caches_and_handles_missing_and_errors(
        service: tuple[str, dict[str, int]]) -> None:
    url, hits = service
    ids = [str(i % 40) for i in range(400)] + ["ghost", "broken"]
    src = MemorySource(values=[{"n": i, "cid": c} for i, c in enumerate(ids)], batch_size=50)
    out, dlq = MemorySink(name="out"), MemorySink(name="dlq")
    p = (Pipeline("http-enrich").source(src)
         .enrich(url=url, key="cid", fields=["name"], headers={"Authorization": "Bearer s3cret"},
                 cache={"max_size": 100, "ttl": 60}, concurrency=16, timeout=5, on_error="dead_letter")
         .sink(out).dead_letter(dlq))
    result = await Runner(p, handle_signals=False).run()
    assert result.exit_code == EXIT_OK
    assert [v["n"] for v in out.values] == list(range(401))          # order kept, ghost kept as is
    assert all(v["name"] == f"customer {v['cid']}" for v in out.values[:400])
    assert "name" not in out.values[400]                              # 404: on_missing keep
    [dead] = dlq.values
    assert dead["payload"] == {"n": 401, "cid": "broken"} and dead["source"]["offset"] == 401
    assert "answered 500" in dead["error"]
    assert all(hits[str(i)] == 1 for i in range(40))                  # one call per key: cache + single-flight
    assert 1 < hits["_max_in_flight"] <= 16
    assert src.committed == {0: 402}


def test_url_mode_needs_a_key_placeholder() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        Pipeline("x").enrich(url="http://127.0.0.1/x", key="id")
