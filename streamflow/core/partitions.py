"""`PartitionListener`: how a stage that keeps state per input partition follows a source's assignment.

A partitioned source (Kafka) owns a changing set of input partitions: a
consumer-group rebalance assigns and revokes them. A stage with keyed state
(`streamflow.state.keyed`) keeps its state per input partition, so it must
know of each change, at the right moment:

* `assigned` runs before the source emits any event of the new partitions
  (the source holds their reads until every listener returned): the stage
  restores their state there;
* `revoked` runs after the revoked partitions are drained and their offsets
  committed: the stage lets go of their state.

The engine knows this protocol only; the Kafka source implements the calling
side (`Source.add_partition_listener`), so no engine module imports a connector.

`StateRestore` is what such a stage reports of each store's restore
(`Transform.state_restores`): the observability layer turns it into the
restore metrics without knowing where the state lives.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol


class PartitionListener(Protocol):
    """Told by a partitioned source which input partitions it owns."""

    async def assigned(self, source: object, topic: str, partitions: Collection[int], total: int) -> None:
        """``partitions`` of ``topic`` (which has ``total`` partitions) are now ours; none is read yet.

        ``source`` is the `Source` telling (its config has the connection a changelog needs)."""
        ...

    async def revoked(self, topic: str, partitions: Collection[int]) -> None:
        """``partitions`` of ``topic`` are drained, committed and given up."""
        ...


class StateRestore(Protocol):
    """The restore of one store of a stage's state: one input partition of one declared state."""

    @property
    def state(self) -> str:
        """The declared state's name."""
        ...

    @property
    def partition(self) -> int:
        """The input partition the store belongs to."""
        ...

    @property
    def records(self) -> int:
        """Changelog records applied so far."""
        ...

    @property
    def remaining(self) -> int:
        """Changelog records still to read (0 once restored)."""
        ...

    @property
    def done(self) -> bool:
        """True once the store is restored."""
        ...
