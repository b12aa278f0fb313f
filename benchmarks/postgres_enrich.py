"""postgres-enrich: each event looked up by key in a PostgreSQL table (100k events, 10k distinct keys).

``bare`` is the hand-written asyncpg loop: per batch of 1000 events, one
``= ANY($1)`` query of the batch's distinct keys, the rows merged into the
events; ``bare-cached`` also keeps every row it fetched in a dict and asks
only for keys it has not seen. ``streamflow`` runs `enrich` with
``postgres:`` and ``concurrency: 1000`` (a batch's keys in one query);
``streamflow-cached`` adds ``cache: {max_size: 20000}``. The server is a
real PostgreSQL started from `tests/postgres/server.py` (Debian's binaries).
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import data
from .harness import Stopwatch, Workload, module_available, tune_like_streamflow

KEYS = 10_000
BATCH = 1000
TABLE = "bench_customers"


def make_event(i: int) -> dict[str, Any]:
    return {"id": i, "customer": (i * 7919) % KEYS}


def row(key: int) -> dict[str, Any]:
    return {"name": f"customer {key}", "tier": ("gold", "silver", "bronze")[key % 3]}


def expected_digest(n: int) -> data.Digest:
    b = data.DigestBuilder()
    b.add_records({**make_event(i), **row(make_event(i)["customer"])} for i in range(n))
    return b.digest()


class PostgresEnrich(Workload):
    name = "postgres-enrich"
    variants = ("bare", "streamflow", "bare-cached", "streamflow-cached")
    baselines = ("bare",)
    default_n = 100_000

    def unavailable(self, variant: str) -> str | None:
        from tests.postgres.server import bin_dir

        return module_available("asyncpg") or (None if bin_dir() else "PostgreSQL is not installed")

    def prepare(self) -> None:
        from tests.postgres.server import PostgresServer

        self.server = PostgresServer().start()
        asyncio.run(self._create_table())

    async def _create_table(self) -> None:
        import asyncpg

        from tests.postgres.server import PASSWORD

        conn = await asyncpg.connect(self.server.dsn, password=PASSWORD)
        try:
            await conn.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, name text, tier text)")
            await conn.copy_records_to_table(TABLE, records=[(k, *row(k).values()) for k in range(KEYS)])
        finally:
            await conn.close()

    def close(self) -> None:
        self.server.stop()

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        from tests.postgres.server import PASSWORD

        return {"n": self.n, "dsn": self.server.dsn, "password": PASSWORD}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        result["note"] = f"{result.pop('queries')} queries"
        return data.Digest(**result.pop("digest")).mismatch(expected_digest(params["n"]))

    def summary(self, outcomes: list[Any]) -> list[str]:
        by = {o.variant: o.median for o in outcomes if o.ok}
        lines = []
        for sf, bare in (("streamflow", "bare"), ("streamflow-cached", "bare-cached")):
            if sf in by and bare in by:
                ratio = by[sf] / by[bare]
                lines.append(f"postgres-enrich: {sf} = {ratio:.2f}x {bare} (target >= 0.9: "
                             f"{'met' if ratio >= 0.9 else 'NOT met'})")
        return lines

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        import uvloop

        if variant.startswith("bare"):
            return uvloop.run(run_bare(params, cached=variant == "bare-cached"))
        return uvloop.run(run_streamflow(params, cached=variant == "streamflow-cached"))


async def run_bare(params: dict[str, Any], cached: bool) -> dict[str, Any]:
    import asyncpg

    tune_like_streamflow()
    n = params["n"]
    pool = await asyncpg.create_pool(params["dsn"], password=params["password"], min_size=1, max_size=4)
    sql = f"SELECT id, name, tier FROM {TABLE} WHERE id = ANY($1::int[])"
    cache: dict[int, dict[str, Any]] = {}
    b = data.DigestBuilder()
    queries = 0
    with Stopwatch() as sw:
        for start in range(0, n, BATCH):
            events = [make_event(i) for i in range(start, min(start + BATCH, n))]
            wanted = {e["customer"] for e in events}
            if cached:
                wanted -= cache.keys()
            found = cache if cached else {}
            if wanted:
                queries += 1
                async with pool.acquire() as conn:
                    for r in await conn.fetch(sql, list(wanted)):
                        found[r["id"]] = {"name": r["name"], "tier": r["tier"]}
            for e in events:
                e.update(found[e["customer"]])
            b.add_records(events)
    await pool.close()
    return sw.result(n, digest=b.digest().to_json(), queries=queries)


async def run_streamflow(params: dict[str, Any], cached: bool) -> dict[str, Any]:
    from streamflow import Pipeline
    from streamflow.core.batch import Batch
    from streamflow.core.runner import Runner
    from streamflow.core.stage import Sink

    b = data.DigestBuilder()

    class DigestSink(Sink):
        async def write(self, batch: Batch) -> None:
            b.add_records([m.value for m in batch.messages])

    p = (Pipeline("postgres-enrich")
         .source("generator", count=params["n"], format="object", batch_size=BATCH,
                 template={"id": {"seq": True}})
         .map(lambda v: make_event(v["id"]))
         .transform("enrich", key="customer", concurrency=BATCH,
                    cache={"max_size": 2 * KEYS} if cached else None,
                    postgres={"dsn": params["dsn"], "password": params["password"], "table": TABLE,
                              "key_column": "id"})
         .sink(DigestSink()))
    enrich = p.stages()[2]
    with Stopwatch() as sw:
        result = await Runner(p, handle_signals=False).run()
    if result.exit_code != 0:
        raise RuntimeError(f"pipeline failed: {result.summary()}")
    return sw.result(result.events_in, digest=b.digest().to_json(), queries=enrich._lookup.queries)
