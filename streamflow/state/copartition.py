"""Co-partitioning: two topics joined partition by partition must have as many partitions, keyed alike.

A join reads partition *p* of both its topics in the member that owns *p*, so
a key must land in the same partition number of both. That holds when both
topics have the same partition count and are written with the same
partitioner (Kafka's default: murmur2 of the key). `check_copartitioned`
checks the counts at start; `key_partition` gives a key's partition under the
default partitioner, so a join can check each event's key on the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

if TYPE_CHECKING:  # the Kafka connector imports the transforms, which import this
    from ..connectors.kafka._aiokafka import Admin
    from ..connectors.kafka.security import KafkaConnection


class NotCoPartitioned(RuntimeError):
    """Two joined topics are not partitioned alike (partition counts, or a key in the wrong partition)."""


def check_copartitioned(a: str, a_partitions: int, b: str, b_partitions: int) -> None:
    """Raise `NotCoPartitioned`, naming both topics and their counts, unless the counts match."""
    if a_partitions != b_partitions:
        raise NotCoPartitioned(
            f"topics {a!r} ({a_partitions} partitions) and {b!r} ({b_partitions} partitions) are not "
            f"co-partitioned: a join reads partition p of both, so both need the same number of partitions "
            f"and keys partitioned alike (re-create one, or copy it into a topic with {a_partitions} "
            f"partitions keyed by the join key)")


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key`` among ``partitions``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPartitions:
    """`key_partition` for one partition count, remembered per key: murmur2 in Python costs tens of µs,
    a dict look-up well under one (at most ``limit`` keys are kept; then it starts over)."""

    def __init__(self, partitions: int, limit: int = 100_000) -> None:
        self.partitions = partitions
        self.limit = limit
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        part = self._known.get(key)
        if part is None:
            if len(self._known) >= self.limit:
                self._known.clear()
            part = self._known[key] = key_partition(key, self.partitions)
        return part


async def partition_counts(connection: KafkaConnection, topics: list[str], client_id: str) -> dict[str, int]:
    """Partitions of each of ``topics``; a missing topic is a `LookupError` naming it."""
    admin: Admin = AIOKafkaAdminClient(**connection.client_options(client_id))
    await admin.start()
    try:
        described: list[dict[str, Any]] = await admin.describe_topics(topics)
    finally:
        await admin.close()
    counts = {meta.get("topic"): len(meta.get("partitions") or ()) for meta in described
              if meta.get("error_code") == 0}
    missing = [t for t in topics if not counts.get(t)]
    if missing:
        raise LookupError(f"topic {missing[0]!r} does not exist (a join needs both its topics, with as many "
                          "partitions each)")
    return {t: counts[t] for t in topics}
