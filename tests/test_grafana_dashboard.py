"""docker/grafana/streamflow.json: valid dashboard JSON whose every query names a series streamflow exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docker/grafana/streamflow.json"


def exported_names() -> set[str]:
    """Metric family names the package defines (as written in its source)."""
    source = "\n".join(p.read_text() for p in (ROOT / "streamflow").rglob("*.py"))
    return set(re.findall(r'"(streamflow_[a-z_]+)"', source))


def test_every_dashboard_query_names_an_exported_series() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 12 and len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    used = {re.sub(r"_(total|bucket)$", "", n) for e in exprs for n in re.findall(r"\bstreamflow_[a-z_]+", e)}
    exported = exported_names()
    missing = {n for n in used if n not in exported and f"{n}_total" not in exported}
    assert not missing, f"the dashboard queries series streamflow does not export: {sorted(missing)}"
    assert {"streamflow_consumer_lag", "streamflow_end_to_end_seconds", "streamflow_stalled"} <= used
