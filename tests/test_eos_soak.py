"""The exactly-once soak, short form: every fault kind once against a broker of this test's own.

`tests/soak/eos.py` is the harness (and, run as a module, the long form); the
verifier reads ``read_committed`` and must find every input exactly once, in
per-key order, with the running totals computed from the input, and no
transaction left open.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.soak.eos import KINDS, Soak

pytestmark = pytest.mark.kafka


async def test_every_input_exactly_once_through_kill_sigterm_broker_restart_and_rebalance(
        own_kafka: Any, tmp_path: Path) -> None:
    soak = Soak(own_kafka.bootstrap, lambda: own_kafka.broker.restart(hard=True), tmp_path, events=6000,
                faults=1, keys=60, commit_interval=0.5, say=lambda s: print(s, file=sys.stderr))
    figures = await soak.run()
    print(figures.report(), file=sys.stderr)
    assert dict(figures.faults) == {kind: 1 for kind in KINDS}
    assert figures.outputs + figures.dead_letters == 6000
    assert figures.dead_letters == 6000 // 997  # the bad events, each dead-lettered once, in the transaction
    assert (figures.missing, figures.duplicates, figures.out_of_order, figures.wrong_totals) == (0, 0, 0, 0)
    assert figures.open_transactions == 0 and figures.committed_behind == 0
