"""The restore path: a fetch of changelog records applied in bulk, in order, and checked for their source."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.connectors.kafka.security import KafkaConnection
from streamflow.state import StateStore, open_store
from streamflow.state.changelog import (
    APPLIED_KEY,
    CHANGE_PREFIX,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    Changelog,
    changelog_topic,
)
from streamflow.state.topics import ChangelogError


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    s = open_store(request.param, tmp_path / "store", "counts", 1)
    request.addfinalizer(s.close)
    return s


def test_restore_many_applies_sets_and_deletes_in_order(store: StateStore) -> None:
    store.restore_many([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])  # no tombstone: the fast path
    store.restore_many([(b"c", b"4"), (b"b", None), (b"c", None), (b"c", b"5"), (b"d", None)])
    assert dict(store.items()) == {b"a": b"3", b"c": b"5"}
    assert store.pending_changes == 0  # a restore is not logged again


def _record(key: bytes, value: bytes, partition: int, offset: int, first: str = SOURCE_PARTITION) -> dict:
    headers = [(SOURCE_PARTITION, str(partition).encode()), (SOURCE_OFFSET, b"%d" % offset)]
    if first != SOURCE_PARTITION:
        headers.reverse()
    return {"key": CHANGE_PREFIX + key, "value": value, "partition": 0, "headers": headers}


@pytest.mark.kafka
async def test_a_restore_checks_each_change_came_from_its_partition(kafka, tmp_path: Path) -> None:
    changelog = Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap),
                          changelog_topic(f"restore-{tmp_path.name}", "counts"), 1)
    await changelog.start()
    try:
        await kafka.produce(changelog.topic, [
            _record(b"a", b"1", 0, 10),
            _record(b"b", b"2", 0, 12, first=SOURCE_OFFSET),  # headers in another order: still read
            {"key": APPLIED_KEY, "value": b"11", "partition": 0},
        ])
        store = open_store("memory", tmp_path, "counts", 0)
        progress = await changelog.restore(store)
        assert dict(store.items()) == {b"a": b"1", b"b": b"2"}
        assert store.applied == 11 and progress.records == 3 and progress.done  # the marker's, not b's 12

        await kafka.produce(changelog.topic, [_record(b"c", b"3", 2, 13)])  # written for another input
        with pytest.raises(ChangelogError, match="came from source partition b'2'"):
            await changelog.restore(open_store("memory", tmp_path, "counts", 0))
    finally:
        await changelog.stop()


@pytest.mark.kafka
async def test_a_flush_cut_short_is_replayed_without_applying_an_input_twice(kafka, tmp_path: Path) -> None:
    """A crash mid-flush logged input 7's change of ``a`` but not its change of ``b``, nor input 6's
    change of ``c``, and no marker after them. The restore stays applied up to the last marker (5):
    inputs 6 and 7 are replayed and applied, except for ``a``, whose change by 7 is in the state."""
    changelog = Changelog(KafkaConnection(bootstrap_servers=kafka.bootstrap),
                          changelog_topic(f"cut-{tmp_path.name}", "counts"), 1)
    await changelog.start()
    try:
        await kafka.produce(changelog.topic, [
            _record(b"a", b"1", 0, 4), _record(b"c", b"1", 0, 5),
            {"key": APPLIED_KEY, "value": b"5", "partition": 0},
            _record(b"a", b"2", 0, 7),  # the flush of inputs 6 and 7, cut short
        ])
        store = open_store("memory", tmp_path, "counts", 0)
        store.skips_logged_writes = True  # as `KeyedState` opens its stores
        await changelog.restore(store)
        assert store.applied == 5 and store.get(b"a") == b"2"

        def apply(offset: int, keys: list[bytes]) -> None:  # each input adds 1 to each of its keys
            assert store.begin(offset)
            for k in keys:
                store.set(k, b"%d" % (int(store.get(k) or b"0") + 1))
            store.finish()

        apply(6, [b"c"])
        apply(7, [b"a", b"b"])
        apply(8, [b"a"])  # past what the changelog held: applied again
        assert dict(store.items()) == {b"a": b"3", b"b": b"1", b"c": b"2"}
        assert {c.key: c.offset for c in store.take_changes()} == {b"c": 6, b"b": 7, b"a": 8}
    finally:
        await changelog.stop()


def test_a_flush_marks_an_input_applied_only_once_its_function_is_done(store: StateStore) -> None:
    store.begin(3)
    store.finish()
    assert store.logged_through == 3
    store.begin(4)  # an async function awaiting: its writes may come after a flush takes the changes
    assert store.logged_through == 3
    store.finish()
    assert store.logged_through == 4
