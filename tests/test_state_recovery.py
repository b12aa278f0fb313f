"""Keyed state through kill -9, against the real broker: every input applied to the state exactly once.

The pipeline runs as a `streamflow run` subprocess keeping a running balance
per account (``state: {balance: value}``); it is killed with SIGKILL three
times mid-stream and restarted. Afterwards the state, restored from its
changelog topic as a restarted member would restore it, must equal the totals
computed directly from the input.
"""

from __future__ import annotations

import json
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamflow.connectors.kafka.security import KafkaConnection
from streamflow.state import open_store
from streamflow.state.changelog import Changelog, changelog_topic

pytestmark = pytest.mark.kafka

FUNCTIONS = '''
def running_total(value, state):
    balance = state.balance.get(0) + value["amount"]
    state.balance.set(balance)
    return {**value, "balance": balance}
'''

ACCOUNTS, PARTS = 600, 3


def event(i: int) -> tuple[str, dict[str, int], int]:
    """Input ``i``: (key, value, partition); an account always lives on one partition."""
    account = (i * 7919) % ACCOUNTS
    return f"acct-{account}", {"id": i, "account": account, "amount": (i % 13) - 4}, account % PARTS


def write_pipeline(tmp_path: Path, name: str, backend: str) -> Path:
    (tmp_path / "statefns.py").write_text(FUNCTIONS)
    doc: dict[str, Any] = {
        "name": name,
        "settings": {"commit_interval": 0.3, "shutdown_timeout": 30},
        "source": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topics": ["${IN_TOPIC}"],
                   "group_id": "${GROUP}", "batch_size": 500, "session_timeout_ms": 6000,
                   "heartbeat_interval_ms": 1000, "group_instance_id": f"{name}-1"},
        "stages": [{"type": "map", "fn": "statefns:running_total", "state": {"balance": "value"},
                    "state_backend": backend}],
        "sink": {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}", "topic": "${OUT_TOPIC}"},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


async def restored_state(kafka: Any, pipeline: str, tmp_path: Path) -> tuple[dict[int, int], dict[int, int]]:
    """Every account's balance and every partition's applied offset, as a restore reads them."""
    changelog = Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap),
                          changelog_topic(pipeline, "balance"), PARTS)
    await changelog.start()
    balances: dict[int, int] = {}
    applied: dict[int, int] = {}
    try:
        for p in range(PARTS):
            store = open_store("memory", tmp_path, "balance", p)
            await changelog.restore(store)
            balances.update({int(k.decode().removeprefix("acct-")): orjson.loads(v) for k, v in store.items()})
            applied[p] = store.applied
    finally:
        await changelog.stop()
    return balances, applied


async def test_kill_9_three_times_applies_every_input_to_state_exactly_once(kafka, pipeline_process, tmp_path):
    n = 100_000
    src, out = await kafka.topic("state-in", PARTS), await kafka.topic("state-out", PARTS)
    await kafka.produce(src, (event(i) for i in range(n)))
    pipeline = f"balances-{uuid.uuid4().hex[:8]}"
    proc = pipeline_process(write_pipeline(tmp_path, pipeline, "disk"), KAFKA_BOOTSTRAP=kafka.bootstrap,
                            IN_TOPIC=src, OUT_TOPIC=out, GROUP=f"g-{src}")
    for outputs in (n // 5, n // 2, n * 4 // 5):  # kill -9 once this many outputs are written
        proc.start()
        await kafka.wait_for(f"{outputs} outputs", lambda outputs=outputs: _at_least(kafka, out, outputs),
                             timeout=120)
        assert proc.running, proc.tail()
        proc.kill()
    proc.start()
    records = await kafka.consume(out, lambda r: len({orjson.loads(x.value)["id"] for x in r}) >= n,
                                  timeout=180, what="every id after 3 crashes")
    # the earlier runs may have written every id already: SIGTERM only once this run has its partitions
    await kafka.wait_for("the restarted pipeline's assignment", lambda: "assigned" in proc.since_start())
    proc.signal(signal.SIGTERM)
    assert await proc.wait() == 0, proc.tail()

    expected: Counter[int] = Counter()
    last_offset = Counter[int]()
    for i in range(n):
        _, value, partition = event(i)
        expected[value["account"]] += value["amount"]
        last_offset[partition] += 1
    balances, applied = await restored_state(kafka, pipeline, tmp_path)
    replayed = len(records) - n
    print(f"\nstate through kill -9 x3: {n} inputs, {replayed} replayed outputs, {len(balances)} accounts",
          file=sys.stderr)
    assert replayed > 0, "no input was replayed: the kills proved nothing"
    assert balances == dict(expected)  # each input applied to the state exactly once
    assert applied == {p: last_offset[p] - 1 for p in range(PARTS)}


async def _at_least(kafka: Any, topic: str, n: int) -> int:
    written = sum((await kafka.end_offsets(topic)).values())
    return written if written >= n else 0
