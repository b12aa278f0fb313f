"""`StateStore`: the keyed state of one stage for one input partition.

A stateful stage declares named states; each one gets a store per input
partition it owns, so state is partitioned exactly like the input (contract 8):
the partition that delivers a key owns that key's state, and a rebalance moves
the store with the partition. Keys and values are bytes here; the typed views
in `streamflow.state.views` encode values with orjson.

Besides the keys, a store knows the highest source offset applied to it
(`applied`). The engine hands every input to the store before running the
user function (`begin`): an input at or below `applied` is a replay (at-least-once
redelivers what was in flight at a crash or a rebalance), and while the function
runs for it the store is read-only — its writes were applied already and are
dropped, so no input ever changes state twice. Its outputs are still emitted.

Every change is also remembered until `take_changes` hands it to the changelog
(`streamflow.state.changelog`), last write per key wins, stamped with the
offset of the input that made it. The local store is a cache of that changelog:
a backend's files are emptied when the store opens, and the state is restored
from the changelog before the partition's first event. So the on-disk backend
is there for state larger than memory, not for durability — no fsync, no WAL.

Backends: ``memory`` (a dict) and ``disk`` (RocksDB through ``rocksdict``; see
`streamflow.state.rocks` and ``benchmarks/state_backends.py`` for why).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import NamedTuple

#: `applied` of a store no input has touched yet.
NOTHING_APPLIED = -1


class Change(NamedTuple):
    """One key's latest change since the last flush: its new value (None: deleted) and the input's offset."""

    key: bytes
    value: bytes | None
    offset: int


class StateStore(ABC):
    """Bytes by bytes key for one state and one input partition, with the offset it is applied up to."""

    #: Whether a replay skips the keys a cut-short flush logged (`restore_logged`); set by `KeyedState`.
    skips_logged_writes = False

    def __init__(self, name: str, partition: int) -> None:
        self.name = name
        self.partition = partition
        #: Highest source offset whose changes are in this store (`NOTHING_APPLIED` at first).
        self.applied = NOTHING_APPLIED
        #: True while the function runs for a replayed input: writes are dropped.
        self.replaying = False
        #: True from `begin` to `finish` of an applied input.
        self.in_progress = False
        self._changes: dict[bytes, tuple[bytes | None, int]] = {}
        #: Changes the changelog holds past its last applied marker, by key: their input's offset.
        self._logged: dict[bytes, int] = {}
        self._logged_max = NOTHING_APPLIED

    # -- what a backend implements ------------------------------------------------
    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, None when absent."""

    @abstractmethod
    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), in no particular order."""

    @abstractmethod
    def _put(self, key: bytes, value: bytes) -> None: ...

    @abstractmethod
    def _drop(self, key: bytes) -> None: ...

    @abstractmethod
    def key_count(self) -> int:
        """How many keys the store holds (an estimate where the backend only has one)."""

    def batch(self) -> AbstractContextManager[object]:
        """Group the writes made inside the ``with`` block (one transaction where the backend has them)."""
        return nullcontext()

    def close(self) -> None:
        """Release the backend's resources; unflushed changes are dropped (the changelog has the state)."""
        self._changes.clear()

    # -- what stages and the changelog call -------------------------------------
    def begin(self, offset: int) -> bool:
        """Start applying the input at source ``offset``: False (and read-only state) when it is a replay."""
        if offset <= self.applied:
            self.replaying = True
            return False
        self.replaying = False
        self.applied = offset
        self.in_progress = True
        if self._logged and offset > self._logged_max:
            self._logged.clear()  # every input the changelog's tail came from is behind us
        return True

    def finish(self) -> None:
        """The input begun last is done: its writes are all made (`logged_through` may include it)."""
        self.in_progress = False

    @property
    def logged_through(self) -> int:
        """The offset a flush may mark applied: `applied`, or one less while that input still runs
        (an async function may write after the flush took the changes)."""
        return self.applied - 1 if self.in_progress else self.applied

    def _logged_already(self, key: bytes) -> bool:
        """Whether the changelog holds a change of ``key`` made by the input being applied or a later one:
        a flush cut short by a crash logged it, so the replay must not apply it twice."""
        return bool(self._logged) and self._logged.get(key, NOTHING_APPLIED) >= self.applied

    def set(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` (dropped while replaying)."""
        if not self.replaying and not self._logged_already(key):
            self._put(key, value)
            self._changes[key] = (value, self.applied)

    def set_last(self, key: bytes, value: bytes) -> None:
        """`set`, and log this change after every other one pending (a marker written after the
        changes it sums up: a flush cut short by a crash never keeps it without them)."""
        if not self.replaying:
            self._changes.pop(key, None)
            self.set(key, value)

    def delete(self, key: bytes) -> None:
        """Remove ``key`` if present (dropped while replaying)."""
        if not self.replaying and not self._logged_already(key):
            self._drop(key)
            self._changes[key] = (None, self.applied)

    def take_changes(self) -> list[Change]:
        """The changes since the last call, one per key, in the order the keys first changed."""
        changes = [Change(k, v, off) for k, (v, off) in self._changes.items()]
        self._changes.clear()
        return changes

    @property
    def pending_changes(self) -> int:
        """Keys changed since the last `take_changes`."""
        return len(self._changes)

    def restore(self, key: bytes, value: bytes | None, offset: int) -> None:
        """Apply one changelog record (not logged again): ``value`` None deletes ``key``."""
        if value is None:
            self._drop(key)
        else:
            self._put(key, value)
        self.restore_applied(offset)

    def restore_many(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Apply changelog records in order (not logged again): the bulk form of `restore`.

        The caller applies the records' highest source offset with `restore_applied`.
        Backends override it to write a fetch's records at once."""
        for key, value in changes:
            if value is None:
                self._drop(key)
            else:
                self._put(key, value)

    def restore_applied(self, offset: int) -> None:
        """Apply the changelog's applied marker: everything up to ``offset`` is in the state."""
        if offset > self.applied:
            self.applied = offset

    def restore_logged(self, logged: dict[bytes, int]) -> None:
        """The changes logged past the last marker (a flush a crash cut short), by key: the input's offset.

        A replay of such an input applies only its writes to other keys — ``logged``'s
        are in the state already. Only `KeyedState`'s stores use it; stages that keep
        offsets per key themselves (windows, dedupe) do not."""
        if not self.skips_logged_writes:
            return
        self._logged = {k: off for k, off in logged.items() if off > self.applied}
        self._logged_max = max(self._logged.values(), default=NOTHING_APPLIED)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}[{self.partition}], applied={self.applied})"


class MemoryStore(StateStore):
    """State in a dict: the fastest, bounded by memory (and restored in full on every assignment)."""

    def __init__(self, name: str, partition: int) -> None:
        super().__init__(name, partition)
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._data.items()))

    def _put(self, key: bytes, value: bytes) -> None:
        self._data[key] = value

    def _drop(self, key: bytes) -> None:
        self._data.pop(key, None)

    def key_count(self) -> int:
        return len(self._data)

    def restore_many(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        data = self._data
        if all(value is not None for _, value in changes):
            data.update(changes)  # type: ignore[arg-type]  # no None: checked just above
        else:
            super().restore_many(changes)


#: A backend: (state name, partition, directory of its files) -> a fresh, empty store.
Backend = Callable[[str, int, Path], StateStore]


def _memory(name: str, partition: int, directory: Path) -> StateStore:
    return MemoryStore(name, partition)


def _disk(name: str, partition: int, directory: Path) -> StateStore:
    from .rocks import RocksStore  # rocksdict is imported only when a disk store is opened

    return RocksStore(name, partition, directory)


#: Backends by the name a ``state:`` declaration gives.
BACKENDS: dict[str, Backend] = {"memory": _memory, "disk": _disk}


def open_store(backend: str, directory: Path | str, name: str = "state", partition: int = 0) -> StateStore:
    """A fresh, empty store of ``backend`` (files, if any, under ``directory``, emptied first)."""
    try:
        make = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown state backend {backend!r}; expected one of {', '.join(BACKENDS)}") from None
    return make(name, partition, Path(directory))
