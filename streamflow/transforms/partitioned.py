"""State that follows a partitioned input when there is one: the shared part of `window` and `dedupe`.

A `window` or `dedupe` stage keeps its state per input partition in a keyed
store (`streamflow.state.keyed`, one state named like the stage, logged to
``<pipeline>-<stage>-changelog``) when its input is partitioned (one Kafka
topic), and in memory otherwise. `PartitionedStore` is that store's partition
listener: it restores a partition's store on assignment and lets the subclass
read it back (`PartitionedStore.load`); `StoreBacked` is the transform's side:
it makes the store when the runner asks for a listener, reports its restores
and readiness, and says whether the state lives in it (`StoreBacked.stored`:
only once the source assigned partitions; the runner registers the listener
only with a partitioned input, `Transform.needs_partitioned_input`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Hashable
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import orjson

from ..core.batch import Batch
from ..core.message import Message
from ..core.partitions import PartitionListener, StateRestore
from ..core.stage import StageContext
from ..state.keyed import KeyedState
from ..state.stores import StateStore

__all__ = ["PartitionedStore", "StoreBacked", "json_key", "owned"]


def json_key(key: Hashable, what: str) -> bytes:
    """The store key of a ``what`` key (orjson); TypeError for a key JSON cannot hold."""
    try:
        return orjson.dumps(key)
    except TypeError:
        raise TypeError(f"{what} key {key!r}: with a Kafka input a {what} key must be a JSON value "
                        "(str, number, bool, null or a tuple of them)") from None


class PartitionedStore(ABC):
    """A stage's state per input partition, in one keyed store; the stage's partition listener."""

    def __init__(self, stage: str, backend: str = "memory", directory: Path | None = None) -> None:
        self.name = stage
        self.keyed = KeyedState(stage, {stage: "value"}, backend, directory)
        #: True once the source assigned partitions: the stage then keeps its state here.
        self.attached = False
        self._stores: dict[int, StateStore] = {}

    def owns(self, msg: Message) -> bool:
        """Whether ``msg``'s partition is assigned here (a straggler of a revoked one is not)."""
        return msg.partition in self._stores

    @abstractmethod
    def load(self, partition: int, store: StateStore) -> None:
        """Read the restored ``store`` of a newly assigned ``partition`` back into working state."""

    @abstractmethod
    def drop(self, partition: int) -> None:
        """Forget the working state of a revoked ``partition`` (its store closes next)."""

    async def settle(self) -> None:
        """Before a revocation: get what is written so far into the changelog (default: it is)."""
        return None

    async def assigned(self, source: object, topic: str, partitions: Collection[int], total: int) -> None:
        """Restore the partitions' stores from the changelog, then `load` each."""
        self.attached = True
        await self.keyed.assigned(source, topic, partitions, total)
        for p in partitions:
            store = self.keyed.store(p, self.name)
            assert store is not None
            self.adopt(p, store)

    def adopt(self, partition: int, store: StateStore) -> None:
        """Hold ``partition``'s restored ``store`` and `load` it."""
        self._stores[partition] = store
        self.load(partition, store)

    async def revoked(self, topic: str, partitions: Collection[int]) -> None:
        """`settle`, `drop` the partitions' working state, close their stores."""
        await self.settle()
        for p in partitions:
            self._stores.pop(p, None)
            self.drop(p)
        await self.keyed.revoked(topic, partitions)

    async def close(self) -> None:
        await self.keyed.close()


ST = TypeVar("ST", bound=PartitionedStore)


class StoreBacked(Generic[ST]):
    """Mixin of a transform whose state follows a partitioned input (`PartitionedStore`)."""

    needs_partitioned_input: ClassVar[bool] = False
    #: The state per input partition (made by `partition_listener`), used once `attached`.
    store: ST | None = None

    @abstractmethod
    def new_store(self) -> ST:
        """A fresh store for this stage (its name is final by now)."""

    def partition_listener(self) -> PartitionListener | None:
        if self.store is None:
            self.store = self.new_store()
        return self.store

    def state_restores(self) -> list[StateRestore]:
        return list(self.store.keyed.restores) if self.store is not None else []

    @property
    def ready(self) -> bool:
        """False while the state of newly assigned partitions is restored."""
        return self.store is None or self.store.keyed.ready

    @property
    def stored(self) -> ST | None:
        """The store when the state lives in it (partitions were assigned), else None (in memory)."""
        store = self.store
        return store if store is not None and store.attached else None

    def bind_store(self, name: str, ctx: StageContext) -> None:
        """Name the store's stage and send its changelog failures to the runner (from `open`)."""
        if self.store is not None:
            self.store.keyed.stage = name
            self.store.keyed.on_failure = ctx.fail

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def owned(batch: Batch, owns: Callable[[Message], bool]) -> Batch:
    """``batch`` without the stragglers of partitions revoked before they drained (their new owner
    reads them again)."""
    if all(owns(m) for m in batch.messages):
        return batch
    return batch.derive([m for m in batch.messages if owns(m)])
