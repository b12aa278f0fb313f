"""Which partition each record goes to.

Keyed records go where ``producer.send`` would put them: the sink hands its
`Partitioning.partitioner` to the producer (``partitioner=``), so both use the
same function; murmur2 results are cached per key while a topic's partition
list is unchanged. Keyless records of one write all go to one partition
(sticky), the next one in turn at each write.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.partitioner import DefaultPartitioner

from ._aiokafka import Producer, available_partitions
from .records import Record

#: Most keys whose partition is remembered per topic (the cache restarts beyond).
_KEY_CACHE_SIZE = 100_000


class Partitioning:
    """Chooses the partition of every record of a write; remembers the turn of keyless writes."""

    def __init__(self) -> None:
        #: The key -> partition function; the producer gets it too (``partitioner=``).
        self.partitioner = DefaultPartitioner()
        self._turn = -1
        self._key_partitions: dict[str, tuple[tuple[int, ...], dict[bytes, int]]] = {}
        #: Per topic, as `_key_partitions`: a message's key (str or bytes) -> (its bytes, its partition).
        self._keys: dict[str, tuple[tuple[int, ...], dict[str | bytes, tuple[bytes, int]]]] = {}

    async def keyless(self, producer: Producer, topic: str) -> int:
        """The partition of a write of keyless records to ``topic`` (`sticky` over those with a leader).

        Waits for the topic's metadata; raises when there is none (yet) or the topic is invalid.
        """
        all_parts = await producer.partitions_for(topic)
        return self.sticky(available_partitions(producer, topic) or list(all_parts))

    def sticky(self, parts: list[int]) -> int:
        """The partition of a write's keyless records: the next one of ``parts`` in turn."""
        self._turn += 1
        return parts[self._turn % len(parts)]

    async def split(self, producer: Producer, topic: str, recs: list[Record]) -> dict[int, list[Record]]:
        """``recs`` of ``topic`` by partition, in write order within each.

        Raises as `keyless` does when the topic's metadata is unavailable.
        """
        all_parts = list(await producer.partitions_for(topic))
        available = available_partitions(producer, topic)
        keys = [r[2] for r in recs]
        if keys.count(None) == len(keys):  # keyless write: one partition
            return {self.sticky(available or all_parts): recs}
        sticky: int | None = None
        choose = self._chooser(topic, all_parts, available)
        groups: dict[int, list[Record]] = {}
        for r, key in zip(recs, keys, strict=True):
            if key is None:
                if sticky is None:
                    sticky = self.sticky(available or all_parts)
                part = sticky
            else:
                part = choose(key)
            group = groups.get(part)
            if group is None:
                groups[part] = [r]
            else:
                group.append(r)
        return groups

    async def key_partitions(self, producer: Producer, topic: str) -> tuple[
            dict[str | bytes, tuple[bytes, int]], Callable[[str | bytes], tuple[bytes, int]], Callable[[], int]]:
        """For a write that partitions each record itself: the cache of key (a message's str or bytes key)
        -> (key bytes, partition), the function for the keys it lacks (it fills the cache), and the
        function giving the write's `sticky` partition for keyless records (the same one each call).

        Raises as `keyless` does when the topic's metadata is unavailable.
        """
        all_parts = list(await producer.partitions_for(topic))
        available = available_partitions(producer, topic)
        choose = self._chooser(topic, all_parts, available)
        ident = tuple(all_parts)
        known = self._keys.get(topic)
        if known is None or known[0] != ident or len(known[1]) > _KEY_CACHE_SIZE:
            known = self._keys[topic] = (ident, {})
        cache = known[1]
        sticky: list[int] = []

        def miss(key: str | bytes) -> tuple[bytes, int]:
            k = key.encode() if isinstance(key, str) else key
            hit = cache[key] = (k, choose(k))
            return hit

        def keyless() -> int:
            if not sticky:
                sticky.append(self.sticky(available or all_parts))
            return sticky[0]
        return cache, miss, keyless

    def _chooser(self, topic: str, all_parts: list[int], available: list[int]) -> Callable[[bytes], int]:
        """key -> partition, as the partitioner chooses it, cached while the partition list holds."""
        partitioner = self.partitioner
        ident = tuple(all_parts)
        known = self._key_partitions.get(topic)
        if known is None or known[0] != ident or len(known[1]) > _KEY_CACHE_SIZE:
            known = self._key_partitions[topic] = (ident, {})
        cache = known[1]

        def choose(key: bytes) -> int:
            part = cache.get(key)
            if part is None:
                part = cache[key] = partitioner(key, all_parts, available)
            return part
        return choose
