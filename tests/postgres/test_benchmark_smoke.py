"""The connector benchmarks (avro-decode, avro-encode, postgres-enrich) run on a tiny N with their output checked."""

from __future__ import annotations

from pathlib import Path

from tests.postgres.server import needs_postgres
from tests.test_benchmarks_smoke import run_smoke

pytestmark = needs_postgres


def test_connector_workloads_produce_correct_output(tmp_path: Path) -> None:
    rows = run_smoke(tmp_path, "--workload", "avro-decode", "--workload", "avro-encode",
                     "--workload", "postgres-enrich")
    got = {(r["workload"], r["variant"]): r["status"] for r in rows}
    assert got == {(w, v): "ok" for w in ("avro-decode", "avro-encode") for v in ("bare", "streamflow")} | {
        ("postgres-enrich", v): "ok" for v in ("bare", "streamflow", "bare-cached", "streamflow-cached")}
