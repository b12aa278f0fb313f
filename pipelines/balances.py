"""A running balance per account, kept as keyed state that survives kill -9 and rebalances.

Reads transactions ``{"account": "a-17", "amount": 12.5}`` keyed by account from
the ``transactions`` topic and writes each one with the account's new balance to
``balances``. The balance lives in the stage's state, restored from the
compacted topic ``balances-balance-changelog`` whenever the process starts or
receives a partition, so it is exact through crashes::

    KAFKA_BOOTSTRAP=127.0.0.1:9092 streamflow run pipelines/balances.py
"""

from __future__ import annotations

import os
from typing import Any

from streamflow import Pipeline

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def apply_transaction(tx: dict[str, Any], state: Any) -> dict[str, Any]:
    """Add the amount to the account's balance (``state.balance``: a `ValueState` of this event's key)."""
    balance = round(state.balance.get(0) + tx["amount"], 2)
    state.balance.set(balance)
    return {**tx, "balance": balance}


pipeline = (
    Pipeline("balances")
    .source("kafka", bootstrap_servers=BOOTSTRAP, topics=["transactions"], group_id="balances")
    .map(apply_transaction, state={"balance": "value"}, state_backend=os.environ.get("STATE_BACKEND", "memory"))
    .sink("kafka", bootstrap_servers=BOOTSTRAP, topic="balances", key_field="account")
)

if __name__ == "__main__":
    raise SystemExit(pipeline.run().exit_code)
