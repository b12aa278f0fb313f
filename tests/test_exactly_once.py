"""``settings.delivery: exactly_once``: the config rules, zombie fencing, and state rolled back to the last commit.

The soak under faults is `tests/test_eos_soak.py`; these check the parts one by one,
against the real broker where Kafka is involved.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ProducerFenced
from click.testing import CliRunner

from streamflow import Pipeline
from streamflow.cli import cli
from streamflow.connectors.kafka.security import KafkaConnection
from streamflow.connectors.kafka.transactions import Transactions, transactional_id
from streamflow.core.errors import ConfigError
from streamflow.core.settings import PipelineSettings
from streamflow.state import open_store
from streamflow.state.changelog import Changelog

KAFKA = {"bootstrap_servers": "127.0.0.1:9"}


def eos_pipeline() -> Pipeline:
    return Pipeline("eos", delivery="exactly_once").source("kafka", topics=["in"], group_id="g", **KAFKA)


# -- config errors (no I/O) -------------------------------------------------------------
def test_every_end_must_be_kafka_and_the_error_names_it() -> None:
    with pytest.raises(ConfigError, match=r"sink 'out' \(type stdout\) cannot take part"):
        eos_pipeline().sink("stdout", name="out").validate()
    with pytest.raises(ConfigError, match=r"dead-letter sink 'dlq' \(type stdout\)"):
        eos_pipeline().sink("kafka", topic="o", **KAFKA).dead_letter("stdout", name="dlq").validate()
    generated = Pipeline("eos", delivery="exactly_once").source("generator", count=1).sink("kafka", topic="o",
                                                                                          **KAFKA)
    with pytest.raises(ConfigError, match=r"source 'generator' \(type generator\)"):
        generated.validate()
    with pytest.raises(ConfigError, match="different bootstrap_servers"):
        eos_pipeline().sink("kafka", topic="o", bootstrap_servers="elsewhere:9092").validate()
    eos_pipeline().sink("kafka", topic="o", **KAFKA).dead_letter("kafka", topic="d", **KAFKA).validate()
    # at-least-once (the default) takes any sink
    Pipeline("alo").source("kafka", topics=["in"], group_id="g", **KAFKA).sink("stdout").validate()


def test_a_non_kafka_sink_is_a_config_error_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "eos.yaml"
    cfg.write_text(textwrap.dedent("""
        name: eos
        settings: {delivery: exactly_once}
        source: {type: kafka, bootstrap_servers: "127.0.0.1:9", topics: [in], group_id: g}
        sinks:
          - {type: kafka, bootstrap_servers: "127.0.0.1:9", topic: out}
          - {type: file, name: archive, path: out.jsonl}
        """))
    for command in ("validate", "run"):
        result = CliRunner().invoke(cli, [command, str(cfg)])
        assert result.exit_code == 2, result.output
        assert "sink 'archive' (type file) cannot take part" in result.output


def test_delivery_accepts_only_the_two_modes() -> None:
    assert PipelineSettings().delivery == "at_least_once"
    with pytest.raises(ValueError, match="exactly_once"):
        PipelineSettings(delivery="exactly-once")  # type: ignore[arg-type]


# -- against the broker ------------------------------------------------------------------
async def committed_values(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[bytes] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out.extend(r.value for r in records)
        return out
    finally:
        await consumer.stop()


def transactions(bootstrap: str) -> Transactions:
    txn = Transactions(PipelineSettings(delivery="exactly_once"))
    txn.use_options({"bootstrap_servers": bootstrap, "acks": "all"})
    return txn


@pytest.mark.kafka
async def test_a_zombie_is_fenced_by_the_new_owners_of_its_partitions(kafka: Any) -> None:
    """A member owned partitions 1 and 2 (id of partition 1); after a rebalance it missed, the new owner of
    partition 1 (which also got 0) fences that id: the zombie's commit fails and nothing it sent is visible."""
    src, out = await kafka.topic("eos-in", 3), await kafka.topic("eos-out", 1)
    tps = [TopicPartition(src, p) for p in range(3)]
    group = f"g-{src}"
    zombie, owner, other = transactions(kafka.bootstrap), transactions(kafka.bootstrap), transactions(kafka.bootstrap)
    try:
        await zombie.begin(group, {tps[1], tps[2]}, 30)
        assert zombie.transactional_id == transactional_id(group, tps[1])
        await (await zombie.current().send(out, b"from the zombie", partition=0))
        await owner.begin(group, {tps[0], tps[1]}, 30)  # its own id is partition 0's; it fences partition 1's
        await other.begin(group, {tps[2]}, 30)
        await (await owner.current().send(out, b"from the owner", partition=0))
        with pytest.raises(ProducerFenced):
            await zombie.commit({tps[1]: 99}, group)
        assert not zombie.active
        await owner.commit({tps[0]: 5, tps[1]: 7}, group)
    finally:
        for txn in (zombie, owner, other):
            await txn.end()
    # the commit markers are written just after the commit returns: wait for the owner's (on a busy
    # broker the zombie's aborted transaction may hold the last stable offset until its 30 s timeout)
    seen = await kafka.wait_for("the owner's record", lambda: committed_values(kafka.bootstrap, out), timeout=90)
    assert seen == [b"from the owner"]
    assert await kafka.committed(group, src) == {0: 5, 1: 7}


@pytest.mark.kafka
async def test_an_aborted_transaction_leaves_no_state_behind(kafka: Any, tmp_path: Path) -> None:
    """Changelog records of an aborted transaction are not restored: the store comes back as of the last
    committed transaction (restore reads read_committed)."""
    src = await kafka.topic("eos-in", 1)
    topic = f"{src}-changelog"
    txn = transactions(kafka.bootstrap)
    changelog = Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap), topic, 1, transactional=txn.current)
    await changelog.start()
    try:
        await txn.begin(f"g-{src}", {TopicPartition(src, 0)}, 30)
        store = open_store("memory", tmp_path / "a", "total", 0)
        store.begin(0)
        store.set(b"k", b"1")
        store.finish()
        await changelog.flush(store)
        await txn.commit({}, f"g-{src}")
        store.begin(1)
        store.set(b"k", b"2")
        store.begin(2)
        store.set(b"j", b"9")
        await changelog.flush(store)
        await txn.end()  # aborts: as a crash or a fenced commit would
        restored = open_store("memory", tmp_path / "b", "total", 0)
        await changelog.restore(restored)
        assert dict(restored.items()) == {b"k": b"1"}
        assert restored.applied == 0
    finally:
        await changelog.stop()
        await txn.end()
