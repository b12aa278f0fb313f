"""State stores (`streamflow.state`): both backends behave the same, replays never change state twice."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamflow.state import NOTHING_APPLIED, MapState, StateStore, ValueState, open_store

BACKENDS = ["memory", "disk"]
_dirs = itertools.count()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    s = open_store(request.param, tmp_path / "store", "counts", 2)
    request.addfinalizer(s.close)
    return s


def test_get_set_delete_and_iterate(store: StateStore) -> None:
    assert store.get(b"a") is None
    store.begin(0)
    store.set(b"a", b"1")
    store.set(b"b", b"2")
    store.set(b"a", b"3")
    store.delete(b"b")
    store.delete(b"never")
    assert store.get(b"a") == b"3" and store.get(b"b") is None
    assert dict(store.items()) == {b"a": b"3"}
    assert store.key_count() == 1
    assert (store.name, store.partition) == ("counts", 2)


def test_a_replayed_offset_is_read_only(store: StateStore) -> None:
    assert store.applied == NOTHING_APPLIED
    assert store.begin(10)
    store.set(b"k", b"first")
    assert not store.begin(10)  # the same input again
    store.set(b"k", b"again")
    store.delete(b"k")
    assert not store.begin(3)  # an older one
    store.set(b"other", b"x")
    assert store.get(b"k") == b"first" and store.get(b"other") is None
    assert store.applied == 10
    assert store.begin(11)
    store.set(b"k", b"second")
    assert store.get(b"k") == b"second"


def test_changes_are_one_per_key_with_the_offset_of_the_last_write(store: StateStore) -> None:
    store.begin(5)
    store.set(b"a", b"1")
    store.set(b"b", b"1")
    store.begin(6)
    store.set(b"a", b"2")
    store.begin(7)
    store.delete(b"b")
    assert store.pending_changes == 2
    assert [tuple(c) for c in store.take_changes()] == [(b"a", b"2", 6), (b"b", None, 7)]
    assert store.take_changes() == []


def test_restore_applies_records_without_logging_them(store: StateStore) -> None:
    store.restore(b"a", b"1", 4)
    store.restore(b"b", b"2", 9)
    store.restore(b"a", None, 6)
    assert dict(store.items()) == {b"b": b"2"}
    assert store.applied == 9 and store.take_changes() == []
    assert not store.begin(9) and store.begin(10)


def test_reads_inside_a_batch_see_its_writes(store: StateStore) -> None:
    store.begin(1)
    with store.batch():
        store.set(b"a", b"1")
        assert store.get(b"a") == b"1"
        with store.batch():
            store.delete(b"a")
        assert store.get(b"a") is None
        store.set(b"b", b"2")
    assert dict(store.items()) == {b"b": b"2"}


def test_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown state backend 'redis'; expected one of memory, disk"):
        open_store("redis", tmp_path)


def test_the_disk_store_starts_empty_and_removes_its_files(tmp_path: Path) -> None:
    first = open_store("disk", tmp_path / "s")
    first.begin(0)
    first.set(b"a", b"1")
    first.close()
    assert not (tmp_path / "s").exists()
    second = open_store("disk", tmp_path / "s")
    try:
        assert list(second.items()) == []  # the changelog, not the directory, is the durable copy
    finally:
        second.close()


ops = st.lists(st.tuples(st.sampled_from(["set", "delete", "begin", "batch"]),
                         st.binary(max_size=3), st.binary(max_size=4), st.integers(0, 30)), max_size=60)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_both_backends_agree_with_a_dict(tmp_path_factory: pytest.TempPathFactory,
                                         ops: list[tuple[str, bytes, bytes, int]]) -> None:
    """Any sequence of writes, offsets and batches leaves every backend holding what a dict model holds."""
    root = tmp_path_factory.mktemp("h")
    stores = [open_store(b, root / f"{b}-{next(_dirs)}") for b in BACKENDS]
    model: dict[bytes, bytes] = {}
    applied, replaying = -1, False
    try:
        for op, key, value, offset in ops:
            if op == "begin":
                replaying = offset <= applied
                applied = max(applied, offset)
                assert {s.begin(offset) for s in stores} == {not replaying}
            elif not replaying:
                model.pop(key, None) if op == "delete" else model.__setitem__(key, value)
            for s in stores:
                if op == "batch":
                    with s.batch():
                        s.set(key, value)
                elif op == "set":
                    s.set(key, value)
                elif op == "delete":
                    s.delete(key)
            if op == "batch" and not replaying:
                model[key] = value
        for s in stores:
            assert dict(s.items()) == model
            assert all(s.get(k) == v for k, v in model.items())
            assert s.applied == applied
    finally:
        for s in stores:
            s.close()


def test_value_state_is_per_key(store: StateStore) -> None:
    seen: ValueState[int] = ValueState(store)
    store.begin(0)
    seen.bind("user-1")
    assert seen.get(0) == 0 and not seen.exists()
    seen.set(5)
    seen.bind(b"user-2")
    seen.set(7)
    seen.bind("user-1")
    assert seen.get() == 5 and seen.exists()
    seen.clear()
    assert seen.get() is None
    seen.bind(b"user-2")
    assert seen.get() == 7


def test_map_state_is_a_mapping_per_key(store: StateStore) -> None:
    by_kind: MapState[int] = MapState(store)
    store.begin(0)
    by_kind.bind("u1")
    by_kind.set("click", 1)
    by_kind.update({"view": 2, "buy": 3})
    by_kind.delete("buy")
    by_kind.delete("absent")
    assert by_kind.to_dict() == {"click": 1, "view": 2}
    assert "click" in by_kind and "buy" not in by_kind and len(by_kind) == 2
    assert sorted(by_kind) == ["click", "view"] and by_kind.get("view") == 2 and by_kind.get("x", 0) == 0
    by_kind.bind("u2")
    assert by_kind.to_dict() == {}
    by_kind.bind("u1")
    by_kind.delete("click")
    by_kind.delete("view")
    assert store.get(b"u1") is None  # the last field gone, the key's state goes too


def test_views_need_a_key(store: StateStore) -> None:
    state: ValueState[int] = ValueState(store)
    with pytest.raises(RuntimeError, match="no key bound"):
        state.get()
    with pytest.raises(ValueError, match="keyed state needs events with a key"):
        state.bind(None)


def test_a_replayed_input_does_not_count_twice(store: StateStore) -> None:
    """The counter a function keeps sees each source offset once, however often it is delivered."""
    count: ValueState[int] = ValueState(store)

    def apply(offset: int, key: str) -> None:
        store.begin(offset)
        count.bind(key)
        count.set((count.get(0) or 0) + 1)

    for offset, key in [(0, "a"), (1, "b"), (2, "a"), (1, "b"), (2, "a"), (3, "a")]:
        apply(offset, key)
    count.bind("a")
    assert count.get() == 3
    count.bind("b")
    assert count.get() == 1
