"""Declaring keyed state on a stage: the function's shape, and the config errors before any I/O."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamflow import Pipeline
from streamflow.config.loader import load_yaml
from streamflow.core.errors import ConfigError
from streamflow.core.message import Message
from streamflow.state import MapState, ValueState
from streamflow.state.keyed import KeyedState, StateScope
from streamflow.state.stores import MemoryStore
from streamflow.transforms.functions import Map


def _total(value: dict[str, int], state: object) -> int:
    return 0


def _kafka(**options: object) -> dict[str, object]:
    return {"bootstrap_servers": "127.0.0.1:1", "group_id": "g", "topics": ["t"], **options}


def test_a_stateful_stage_needs_a_kafka_source() -> None:
    p = Pipeline("p").source("generator", count=1).map(_total, state={"total": "value"}).sink("stdout")
    with pytest.raises(ConfigError, match=r"stage 'map' keeps keyed state.*source 'generator' cannot feed it: "
                                          r"it is not a partitioned \(Kafka\) input"):
        p.validate()


def test_a_stateful_stage_needs_one_input_topic() -> None:
    p = Pipeline("p").source("kafka", **_kafka(topics=["a", "b"])).map(_total, state={"t": "value"}) \
        .sink("stdout")
    with pytest.raises(ConfigError, match="consumes several topics"):
        p.validate()
    ok = Pipeline("p").source("kafka", **_kafka()).map(_total, state={"t": "value"}).sink("stdout")
    assert ok.validate() is ok


def test_state_runs_one_event_at_a_time() -> None:
    async def slow(value: object, state: object) -> object:
        return value

    with pytest.raises(ValueError, match="keyed state is applied in input order"):
        Map(fn=slow, state={"t": "value"}, concurrency=4)
    with pytest.raises(ConfigError, match=r"state.*at least 1 item"):
        Map(fn=_total, state={})


def test_yaml_declares_state_and_rejects_unknown_kinds(tmp_path: Path) -> None:
    (tmp_path / "sfns.py").write_text("def total(value, state):\n    return value\n")
    doc = """
name: p
source: {type: kafka, bootstrap_servers: "127.0.0.1:1", group_id: g, topics: [t]}
stages:
  - {type: map, fn: "sfns:total", state: {total: %s}, state_backend: disk}
sink: {type: stdout}
"""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(doc % "value")
    bad.write_text(doc % "counter")
    sys.path.insert(0, str(tmp_path))
    try:
        stage = load_yaml(good).transforms[0]
        listener = stage.partition_listener()
        assert isinstance(listener, KeyedState) and listener.states == {"total": "value"}
        assert listener.backend == "disk"
        with pytest.raises(ConfigError, match=r"bad.yaml.*stages\[0\]\.state\.total"):
            load_yaml(bad)
    finally:
        sys.path.remove(str(tmp_path))


async def test_the_function_gets_its_states_bound_to_the_event_key() -> None:
    keyed = KeyedState("s", {"balance": "value", "seen": "map"})
    stores = [MemoryStore("balance", 0), MemoryStore("seen", 0)]
    keyed._scopes[0] = StateScope({"balance": ValueState(stores[0]), "seen": MapState(stores[1])}, stores)
    for offset, (key, amount) in enumerate([("a", 5), ("b", 1), ("a", 2)]):
        state = keyed.enter(Message({"amount": amount}, key=key, partition=0, offset=offset))
        state.balance.set(state.balance.get(0) + amount)
        state["seen"].set(str(offset), True)
    assert dict(stores[0].items()) == {b"a": b"7", b"b": b"1"}
    replay = keyed.enter(Message({}, key="a", partition=0, offset=1))
    assert replay.replaying and replay.key == b"a"
    replay.balance.set(1000)  # dropped: offset 1 is applied already
    assert stores[0].get(b"a") == b"7"
    with pytest.raises(RuntimeError, match="not assigned to this member"):
        keyed.enter(Message({}, key="a", partition=5, offset=0))
    with pytest.raises(AttributeError, match="no state named 'nope'"):
        _ = state.nope
