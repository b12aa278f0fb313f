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
        assert store.applied == 12 and progress.records == 3 and progress.done

        await kafka.produce(changelog.topic, [_record(b"c", b"3", 2, 13)])  # written for another input
        with pytest.raises(ChangelogError, match="came from source partition b'2'"):
            await changelog.restore(open_store("memory", tmp_path, "counts", 0))
    finally:
        await changelog.stop()
