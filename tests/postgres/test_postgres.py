"""The postgres sink, source and enrich lookup against a real PostgreSQL server (Debian's), started here."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import pytest

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.connectors.postgres_sink import PostgresSink
from streamflow.connectors.postgres_source import PostgresSource
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.transforms.enrich import Enrich
from tests.postgres.server import PASSWORD, PostgresServer, needs_postgres

pytestmark = needs_postgres

_tables = itertools.count()


def table() -> str:
    """A table name no other test uses."""
    return f"t{next(_tables)}"


def connection(server: PostgresServer) -> dict[str, Any]:
    return {"dsn": server.dsn, "password": PASSWORD}


async def run(values: list[Any], sink: Any = None, *, source: Any = None, batch_size: int = 100,
              expect: int = EXIT_OK) -> tuple[MemorySource | Any, MemorySink]:
    """Run a pipeline from ``values`` (or ``source``) into ``sink`` (default: memory): source and dead letters."""
    src = source or MemorySource(values=values, batch_size=batch_size)
    dlq = MemorySink(name="dlq")
    p = (Pipeline("pg", sink_retry={"backoff": 0.05, "max_backoff": 0.2}).source(src)
         .sink(sink or MemorySink(name="out")).dead_letter(dlq))
    result = await Runner(p, handle_signals=False).run()
    assert result.exit_code == expect, result
    return src, dlq


async def test_upsert_keeps_the_last_event_of_each_key_one_transaction_per_batch(
        postgres: PostgresServer, db: asyncpg.Connection) -> None:
    name = table()
    await db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, total numeric, at timestamptz, tags jsonb)")
    events = [{"id": i % 50, "total": i * 1.5, "at": f"2024-05-01T10:00:{i % 60:02d}+00:00",
               "tags": {"n": i}} for i in range(500)]
    sink = PostgresSink(name="pg", table=name, key=["id"], **connection(postgres))
    src, dlq = await run(events, sink)
    assert src.committed == {0: 500} and dlq.values == []
    assert sink.commits == 5   # one transaction per batch of 100
    rows = {r["id"]: r for r in await db.fetch(f"SELECT * FROM {name}")}
    assert len(rows) == 50
    assert float(rows[7]["total"]) == 457 * 1.5 and rows[7]["tags"] == '{"n": 457}'  # the last event of id 7
    assert rows[7]["at"].isoformat() == "2024-05-01T10:00:37+00:00"


async def test_copy_and_insert_modes(postgres: PostgresServer, db: asyncpg.Connection) -> None:
    name = table()
    await db.execute(f"CREATE TABLE {name} (seq bigint GENERATED ALWAYS AS IDENTITY, id int, note text)")
    events = [{"id": i, "note": f"n{i}", "ignored": True} for i in range(250)]
    for mode in ("copy", "insert"):
        await run(events, PostgresSink(table=name, mode=mode, **connection(postgres)))
    assert await db.fetchval(f"SELECT count(*) FROM {name}") == 500
    assert await db.fetchval(f"SELECT count(DISTINCT id) FROM {name} WHERE note = 'n' || id") == 250
    assert await db.fetchval(f"SELECT max(seq) FROM {name}") == 500  # the identity column filled itself


async def test_refused_rows_are_dead_lettered_and_the_rest_committed(
        postgres: PostgresServer, db: asyncpg.Connection) -> None:
    name = table()
    await db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, qty int NOT NULL CHECK (qty > 0))")
    events: list[Any] = [{"id": i, "qty": 1} for i in range(10)]
    events[3] = {"id": 3, "qty": None}          # NOT NULL
    events[5] = {"id": 5, "qty": -1}            # CHECK
    events[7] = {"id": 7, "qty": "many"}        # not an int
    events[8] = "not a mapping"
    for mode in ("upsert", "copy"):
        await db.execute(f"TRUNCATE {name}")
        sink = PostgresSink(table=name, mode=mode, key=["id"] if mode == "upsert" else None,
                            on_error="dead_letter", **connection(postgres))
        src, dlq = await run(events, sink, batch_size=10)
        assert src.committed == {0: 10}
        assert sorted(r["id"] for r in await db.fetch(f"SELECT id FROM {name}")) == [0, 1, 2, 4, 6, 9]
        assert [d["source"]["offset"] for d in dlq.values] == [8, 3, 5, 7]  # the unconvertible one first
        assert "NotNullViolation" in dlq.values[1]["error"] and "CheckViolation" in dlq.values[2]["error"]


async def test_a_batch_is_acknowledged_only_after_its_commit(postgres: PostgresServer, db: asyncpg.Connection) -> None:
    name = table()
    # a deferred unique constraint is checked at COMMIT: the batch's commit fails after every row was written
    await db.execute(f"CREATE TABLE {name} (id int, UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)")
    sink = PostgresSink(table=name, mode="insert", **connection(postgres))
    src, _ = await run([{"id": 1}, {"id": 2}, {"id": 1}], sink, expect=1)
    assert src.committed == {} and await db.fetchval(f"SELECT count(*) FROM {name}") == 0


async def test_a_lost_connection_is_retried_and_nothing_is_lost_or_doubled(
        postgres: PostgresServer, db: asyncpg.Connection) -> None:
    name = table()
    await db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, n int)")
    # the first insert of id 250 waits (a sequence is not rolled back: only the first attempt waits)
    await db.execute(f"CREATE SEQUENCE {name}_once")
    await db.execute(f"""CREATE FUNCTION {name}_stall() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.id = 250 AND nextval('{name}_once') = 1 THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$""")
    await db.execute(f"CREATE TRIGGER stall BEFORE INSERT ON {name} FOR EACH ROW EXECUTE FUNCTION {name}_stall()")
    sink = PostgresSink(table=name, key=["id"], **connection(postgres))
    running = asyncio.create_task(run([{"id": i, "n": i} for i in range(500)], sink))
    stalled = None
    while stalled is None:
        await asyncio.sleep(0.05)
        stalled = await db.fetchval("SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
    assert sink.commits == 2                       # batches 0-99 and 100-199 committed; 200-299 waits
    await db.execute("SELECT pg_terminate_backend($1)", stalled)
    src, dlq = await running
    assert src.committed == {0: 500} and dlq.values == []
    assert await db.fetchval(f"SELECT count(*) FROM {name}") == 500
    assert sink.commits == 5 and sink.ctx is not None and sink.ctx.stats.retries == 1


async def test_enrich_looks_keys_up_in_batches_with_cache(postgres: PostgresServer, db: asyncpg.Connection) -> None:
    name = table()
    await db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, name text, tier text)")
    await db.executemany(f"INSERT INTO {name} VALUES ($1, $2, $3)",
                         [(i, f"customer {i}", "gold" if i % 2 else "silver") for i in range(400)])
    events = [{"n": i, "customer": str(i % 500)} for i in range(3000)]   # ids 400..499 are not in the table
    for cache in (None, {"max_size": 1000}):
        out = MemorySink(name="out")
        stage = {"type": "enrich", "name": "customers", "key": "customer", "fields": ["name"],
                 "concurrency": 1 if cache is None else 100,
                 "postgres": {"table": name, "key_column": "id", **connection(postgres)}, "cache": cache}
        src = MemorySource(values=[dict(e) for e in events], batch_size=100)
        p = Pipeline("pg").source(src).transform(stage.pop("type"), **stage).sink(out)
        enrich = p.stages()[1]
        assert isinstance(enrich, Enrich) and enrich._lookup is not None
        assert (await Runner(p, handle_signals=False).run()).exit_code == EXIT_OK
        assert [v["n"] for v in out.values] == list(range(3000))
        assert all(v.get("name") == (f"customer {v['customer']}" if int(v["customer"]) < 400 else None)
                   for v in out.values)
        lookup = enrich._lookup
        if cache is None:
            assert lookup.queries == 30 and lookup.keys_fetched == 30 * 100   # one query per batch
        else:  # 100 batches in flight: each key looked up once (cache, and a fetch under way is shared)
            assert lookup.keys_fetched == 500 and lookup.queries <= 5


async def test_enrich_failures_go_to_on_error_one_event_each(postgres: PostgresServer,
                                                             db: asyncpg.Connection) -> None:
    name = table()
    await db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, name text)")
    await db.execute(f"INSERT INTO {name} VALUES (1, 'one'), (2, 'two')")
    values = [{"c": 1}, "not a mapping", {"c": "x"}, {"c": 3}, {"c": None}, {"c": "2"}]
    src, out, dlq = MemorySource(values=values, batch_size=10), MemorySink(name="out"), MemorySink(name="dlq")
    p = (Pipeline("pg").source(src)
         .enrich(key="c", on_missing="error", on_error="dead_letter", name="lookup",
                 postgres={"table": name, "key_column": "id", **connection(postgres)})
         .sink(out).dead_letter(dlq))
    assert (await Runner(p, handle_signals=False).run()).exit_code == EXIT_OK
    assert out.values == [{"c": 1, "name": "one"}, {"c": "2", "name": "two"}]
    assert [d["source"]["offset"] for d in dlq.values] == [1, 2, 3, 4]
    assert "expects a mapping" in dlq.values[0]["error"] and "invalid literal for int" in dlq.values[1]["error"]
    assert "nothing found for key 3" in dlq.values[2]["error"] and src.committed == {0: 6}


async def test_source_reads_new_rows_and_resumes_after_its_checkpoint(
        postgres: PostgresServer, db: asyncpg.Connection) -> None:
    name = table()
    await db.execute(f"CREATE TABLE {name} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text)")
    await db.executemany(f"INSERT INTO {name} (body) VALUES ($1)", [(f"b{i}",) for i in range(2500)])
    options = {"table": name, "column": "id", "mode": "read", "batch_size": 1000, "name": "orders",
               **connection(postgres)}
    out = MemorySink(name="out")
    await run([], out, source=PostgresSource(**options))
    assert [v["id"] for v in out.values] == list(range(1, 2501)) and out.values[0]["body"] == "b0"
    saved = await db.fetch("SELECT id, position FROM streamflow_checkpoints")
    assert [(r["id"], r["position"]) for r in saved] == [("pg/orders", "2500")]

    await db.executemany(f"INSERT INTO {name} (body) VALUES ($1)", [(f"new{i}",) for i in range(10)])
    again = MemorySink(name="out")
    await run([], again, source=PostgresSource(**options))
    assert [v["body"] for v in again.values] == [f"new{i}" for i in range(10)]


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="upsert needs `key`"):
        Pipeline("x").sink("postgres", dsn="postgresql://h/db", table="t")
    with pytest.raises(ValueError, match="exactly one of `table`, `fn`, `url`, `postgres` or `redis`"):
        Pipeline("x").enrich(key="k", fn="json:dumps", postgres={"dsn": "postgresql://h/db", "table": "t",
                                                                 "key_column": "id"})
