"""The state changelog against the real broker: restore equals what was written, replays count once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streamflow.connectors.kafka.security import KafkaConnection
from streamflow.connectors.kafka.source import KafkaSource
from streamflow.state import StateStore, ValueState, open_store
from streamflow.state.changelog import Changelog, ChangelogError, RestoreProgress, changelog_topic
from streamflow.state.keyed import KeyedState
from streamflow.state.topics import _cleanup_policy, _partition_count

pytestmark = pytest.mark.kafka


def _changelog(kafka, topic: str | None = None, partitions: int = 3) -> Changelog:
    topic = topic or changelog_topic(f"p-{uuid.uuid4().hex[:8]}", "counts")
    return Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap), topic, partitions)


async def _admin(kafka) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    return admin


def _count(store: StateStore, events: list[tuple[int, str]]) -> None:
    """A counting stage: one increment per input offset, however often it is delivered."""
    counts: ValueState[int] = ValueState(store)
    for offset, key in events:
        store.begin(offset)
        counts.bind(key)
        counts.set((counts.get(0) or 0) + 1)
        store.finish()


@pytest.mark.parametrize("backend", ["memory", "disk"])
async def test_a_fresh_store_restored_from_the_changelog_equals_the_original(kafka, tmp_path: Path,
                                                                             backend: str) -> None:
    changelog = _changelog(kafka)
    await changelog.start()
    try:
        original = open_store(backend, tmp_path / "a", "counts", 1)
        other = open_store("memory", tmp_path / "b", "counts", 2)
        for round_no in range(3):
            _count(original, [(round_no * 1000 + i, f"user-{i % 700}") for i in range(1000)])
            original.begin(round_no * 1000 + 1000)
            for i in range(0, 700, 7 + round_no):
                original.delete(f"user-{i}".encode())
            original.finish()
            assert await changelog.flush(original) == 700
            _count(other, [(round_no, "someone-else")])
            await changelog.flush(other)
        assert await changelog.flush(original) == 0  # nothing changed since

        seen: list[RestoreProgress] = []
        restored = open_store(backend, tmp_path / "c", "counts", 1)
        progress = await changelog.restore(restored, seen.append)
        assert dict(restored.items()) == dict(original.items())
        assert restored.applied == original.applied == 3000
        assert progress.done and progress.records == 3 * 701 and progress.remaining == 0
        assert seen[-1] is progress and all(p.partition == 1 for p in seen)
        assert restored.take_changes() == []  # a restore is not logged again
        for store in (original, other, restored):
            store.close()
    finally:
        await changelog.stop()


async def test_tombstones_delete_on_restore(kafka, tmp_path: Path) -> None:
    changelog = _changelog(kafka)
    await changelog.start()
    try:
        store = open_store("memory", tmp_path, "counts", 0)
        _count(store, [(0, "a"), (1, "b"), (2, "c")])
        await changelog.flush(store)
        store.begin(3)
        store.delete(b"b")
        store.delete(b"c")
        store.finish()
        await changelog.flush(store)
        restored = open_store("memory", tmp_path, "counts", 0)
        await changelog.restore(restored)
        assert dict(restored.items()) == {b"a": b"1"} and restored.applied == 3
    finally:
        await changelog.stop()


async def test_a_replayed_input_is_not_applied_twice_after_a_restore(kafka, tmp_path: Path) -> None:
    """kill -9 after the changelog flush but before the source commit: the replay must not count again."""
    events = [(offset, f"k{offset % 3}") for offset in range(20)]
    changelog = _changelog(kafka)
    await changelog.start()
    try:
        before_crash = open_store("memory", tmp_path, "counts", 2)
        _count(before_crash, events[:12])
        await changelog.flush(before_crash)  # changes acked; the source committed only offset 5
        _count(before_crash, events[12:14])  # applied but never flushed: lost with the process

        after = open_store("memory", tmp_path, "counts", 2)
        await changelog.restore(after)
        assert after.applied == 11
        _count(after, events[5:])  # the source replays from its committed offset
        expected = open_store("memory", tmp_path, "counts", 2)
        _count(expected, events)
        assert dict(after.items()) == dict(expected.items()) == {b"k0": b"7", b"k1": b"7", b"k2": b"6"}
    finally:
        await changelog.stop()


async def test_the_topic_is_created_compacted_with_the_inputs_partition_count(kafka) -> None:
    changelog = _changelog(kafka, partitions=4)
    await changelog.start()
    await changelog.stop()
    again = _changelog(kafka, changelog.topic, partitions=4)
    await again.start()  # an existing topic that fits is used as it is
    await again.stop()
    admin = await _admin(kafka)
    try:
        assert await _partition_count(admin, changelog.topic, 10) == 4
        assert await _cleanup_policy(admin, changelog.topic) == "compact"
    finally:
        await admin.close()


async def test_a_partition_count_mismatch_is_a_clear_error(kafka) -> None:
    changelog = _changelog(kafka, partitions=2)
    await changelog.start()
    await changelog.stop()
    wrong = _changelog(kafka, changelog.topic, partitions=3)
    with pytest.raises(ChangelogError, match=rf"changelog topic '{changelog.topic}' has 2 partitions but the "
                                             r"input has 3"):
        await wrong.start()


async def test_a_topic_that_is_not_compacted_is_refused(kafka) -> None:
    topic = await kafka.topic("not-compacted", 3)
    with pytest.raises(ChangelogError, match="cleanup.policy=delete: it must be compacted"):
        await _changelog(kafka, topic).start()


async def test_records_that_are_not_a_changelogs_are_refused_on_restore(kafka, tmp_path: Path) -> None:
    changelog = _changelog(kafka, partitions=1)
    await changelog.start()
    try:
        await kafka.produce(changelog.topic, [(b"plain-key", b"1", 0)])
        with pytest.raises(ChangelogError, match="is not a streamflow changelog record"):
            await changelog.restore(open_store("memory", tmp_path, "counts", 0))
    finally:
        await changelog.stop()


def test_topic_names_are_kafka_safe() -> None:
    assert changelog_topic("orders pipeline", "seen/ids") == "orders_pipeline-seen_ids-changelog"
    with pytest.raises(ChangelogError, match="longer than Kafka's 249"):
        changelog_topic("p" * 250, "s")


async def test_keyed_state_reports_each_stores_restore_until_its_partition_is_revoked(kafka, tmp_path: Path) -> None:
    name = f"counts{uuid.uuid4().hex[:8]}"
    writer = Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap), changelog_topic("pipeline", name), 2)
    await writer.start()
    try:
        store = open_store("memory", tmp_path / "w", name, 1)
        _count(store, [(i, f"user-{i % 10}") for i in range(50)])
        assert await writer.flush(store) == 10  # 10 changes + the applied marker: 11 records
    finally:
        await writer.stop()

    keyed = KeyedState("accounts", {name: "value"}, directory=tmp_path / "k")
    source = KafkaSource(bootstrap_servers=kafka.bootstrap, topics=["in"], group_id="g")
    assert keyed.restores == [] and keyed.ready
    try:
        await keyed.assigned(source, "in", [0, 1], 2)
        restores = {p.partition: p for p in keyed.restores}
        assert keyed.ready and sorted(restores) == [0, 1]
        assert all(p.done and p.remaining == 0 and p.state == name for p in restores.values())
        assert restores[1].records == 11 and restores[0].records == 0
        await keyed.revoked("in", [1])
        assert [p.partition for p in keyed.restores] == [0]
    finally:
        await keyed.close()
