"""file-enrich: JSON lines -> parse -> filter (10% dropped) -> enrich from a 1000-key table -> JSON lines.

``bare`` is the best hand-written asyncio loop (uvloop, 1 MiB aiofiles reads,
orjson on bytes, list comprehensions, one write per chunk); ``streamflow`` is
the same job as a `Pipeline` of the file source, `filter`, `enrich` (table)
and the file sink, every component with its default settings.
"""

from __future__ import annotations

import os
from typing import Any

from . import data
from .harness import Stopwatch, Workload, tune_like_streamflow


class FileEnrich(Workload):
    name = "file-enrich"
    variants = ("bare", "streamflow")
    baselines = ("bare",)
    default_n = 1_000_000
    timeout = 300.0

    def prepare(self) -> None:
        self.input = str(data.events_file(self.n))
        self.table = str(data.table_file())
        self.expected = data.expected_enrich_digest(self.n)

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        out = self.opts.workdir / f"file-enrich-{variant}-{round_no}.jsonl"
        return {"n": self.n, "input": self.input, "table": self.table, "output": str(out)}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        got = data.file_digest(params["output"])
        return got.mismatch(self.expected)

    def cleanup_run(self, params: dict[str, Any]) -> None:
        try:
            os.unlink(params["output"])
        except FileNotFoundError:
            pass

    def summary(self, outcomes: list[Any]) -> list[str]:
        by = {o.variant: o for o in outcomes if o.ok}
        if "bare" in by and "streamflow" in by:
            ratio = by["streamflow"].median / by["bare"].median
            return [f"file-enrich: streamflow / bare = {ratio:.2f} (target >= 0.90: "
                    f"{'met' if ratio >= 0.9 else 'NOT met'})"]
        return []

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"bare": run_bare, "streamflow": run_streamflow}[variant](params)


# -- bare -------------------------------------------------------------------------------
async def _bare(params: dict[str, Any]) -> int:
    import aiofiles
    import orjson

    loads, dumps, opt = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE
    index = data.table_index()
    count = 0
    async with aiofiles.open(params["input"], "rb") as src, aiofiles.open(params["output"], "wb") as dst:
        rest = b""
        while True:
            chunk = await src.read(1 << 20)
            if not chunk:
                lines = [rest] if rest.strip() else []
            else:
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
            records = [loads(line) for line in lines]
            count += len(records)
            kept = [r for r in records if r["amount"] >= 10.0]
            for r in kept:
                r.update(index[r["user_id"]])
            await dst.write(b"".join([dumps(r, option=opt) for r in kept]))
            await dst.flush()
            if not chunk:
                break
    return count


def run_bare(params: dict[str, Any]) -> dict[str, Any]:
    import uvloop

    tune_like_streamflow()
    with Stopwatch() as sw:
        count = uvloop.run(_bare(params))
    return sw.result(count)


# -- streamflow -------------------------------------------------------------------------
def pipeline(params: dict[str, Any]) -> Any:
    """The file-enrich job as a streamflow pipeline."""
    import streamflow.connectors.files_sink  # noqa: F401  (registers file source/sink)
    import streamflow.connectors.files_source  # noqa: F401
    import streamflow.transforms.enrich  # noqa: F401
    from streamflow import Pipeline

    return (Pipeline("file-enrich")
            .source("file", path=params["input"])
            .filter(data.keep)
            .transform("enrich", table=params["table"], key="user_id", fields=["segment", "region"])
            .sink("file", path=params["output"]))


def run_streamflow(params: dict[str, Any]) -> dict[str, Any]:
    from streamflow.core.runner import run_pipeline

    p = pipeline(params)
    with Stopwatch() as sw:
        result = run_pipeline(p, handle_signals=False)
    if result.exit_code != 0:
        raise RuntimeError(f"pipeline failed: {result.summary()}")
    return sw.result(result.events_in)

