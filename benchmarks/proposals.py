"""Proposed connector hot-path changes, tried in a copy to measure what they would gain.

This module does not change the connectors: it patches copies of their hot
paths into the running process, for the opt-in variant ``streamflow-proposed``
(``python -m benchmarks run --variant streamflow-proposed``), so each
recommendation in benchmarks/README.md comes with a measured gain. Every
proposal measured so far has been implemented in the connectors themselves,
so `PATCHES` is empty until the next one; a patch must fall back to the
original code for anything but the plain case.
"""

from __future__ import annotations

from typing import Any

#: Environment variable naming the proposals to install (comma-separated names of `PATCHES`; default all).
ENV = "STREAMFLOW_BENCH_PROPOSALS"


def install() -> None:
    """Patch the proposed hot paths in (this process only); ``$STREAMFLOW_BENCH_PROPOSALS`` selects some."""
    import os

    chosen = os.environ.get(ENV)
    names = [n.strip() for n in chosen.split(",") if n.strip()] if chosen else list(PATCHES)
    for name in names:
        PATCHES[name]()


#: Proposal name -> installer.
PATCHES: dict[str, Any] = {}
