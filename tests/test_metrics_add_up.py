"""Metrics that add up: for every stage ``in = out + filtered + dead_lettered + skipped`` over a workload with
every outcome, and a sink's ``events_out`` counts only what it durably delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import EXIT_OK, Runner

N = 120


def payload(i: int) -> bytes:
    if i % 17 == 0:
        return b"   "  # blank: no event (counted as blank and filtered by parse)
    if i % 13 == 0:
        return b'{"id": %d' % i  # broken JSON: dead-lettered by parse
    return b'{"id": %d}' % i


def enrich(value: dict[str, Any]) -> dict[str, Any]:
    if value["id"] % 11 == 0:
        raise ValueError("no enrichment")  # skipped
    return {**value, "even": value["id"] % 2 == 0}


def keep(value: dict[str, Any]) -> bool:
    if value["id"] % 7 == 0:
        raise ValueError("cannot decide")  # dead-lettered
    return value["id"] % 3 != 0  # the rest of the multiples of 3 are filtered


async def refuse_multiples_of_5(request: web.Request) -> web.Response:
    values = orjson.loads(await request.read())
    if any(v["id"] % 5 == 0 for v in (values if isinstance(values, list) else [values])):
        return web.Response(status=422, text="refused")
    return web.json_response({"ok": True})


async def run(tmp_path: Path) -> tuple[Runner, Any]:
    app = web.Application()
    app.router.add_post("/events", refuse_multiples_of_5)
    server = web.AppRunner(app, access_log=None)
    await server.setup()
    await web.TCPSite(server, "127.0.0.1", 0).start()
    port = server.addresses[0][1]
    try:
        pipeline = (Pipeline("add-up").source(MemorySource(values=[payload(i) for i in range(N)], batch_size=1))
                    .transform("parse", on_error="dead_letter")
                    .map(enrich, on_error="skip")
                    .filter(keep, on_error="dead_letter")
                    .sink("http", url=f"http://127.0.0.1:{port}/events", name="http")
                    .sink("file", path=str(tmp_path / "out.jsonl"), flush={"interval": 0.05}, name="file")
                    .dead_letter(MemorySink()))
        runner = Runner(pipeline, handle_signals=False)
        result = await runner.run()
    finally:
        await server.cleanup()
    return runner, result


def test_every_stage_adds_up_and_sinks_count_only_what_they_delivered(tmp_path: Path) -> None:
    runner, result = asyncio.run(run(tmp_path))
    assert result.exit_code == EXIT_OK
    stats = runner.stats
    for stage in ("parse", "map", "filter"):
        s = stats[stage]
        assert s.events_in == s.events_out + s.filtered + s.dead_lettered + s.skipped, s
    assert stats["memory"].events_out == N == stats["parse"].events_in
    parse, enriched, kept = stats["parse"], stats["map"], stats["filter"]
    assert (parse.blank, parse.filtered, parse.dead_lettered) == (8, 8, 9)
    assert enriched.skipped > 0 and kept.filtered > 0 and kept.dead_lettered > 0
    http, file = stats["http"], stats["file"]
    written = [line for line in (tmp_path / "out.jsonl").read_bytes().splitlines() if line]
    refused = sum(1 for line in written if orjson.loads(line)["id"] % 5 == 0)
    assert refused > 0
    assert http.events_in == file.events_in == kept.events_out
    assert file.events_out == len(written) == file.events_in  # all flushed by the end
    assert http.events_out == http.events_in - refused and http.dead_lettered == refused
    dead = stats["dead_letter"]
    assert dead.events_out == parse.dead_lettered + kept.dead_lettered + http.dead_lettered
