"""`SeenKeys`: the keys a `dedupe` stage has seen, per input partition, kept in a state store.

With a partitioned input (one Kafka topic) the seen-set of `dedupe` lives in a
store of `streamflow.state.keyed` (one state named like the stage, logged to
``<pipeline>-<stage>-changelog``), so a restart or a rebalance keeps
deduplicating. Per input partition, an ordered mapping in memory (least
recently seen first) mirrors the store; each key's stored value is
``[expires, offset]``: when it stops counting as seen (epoch seconds, null
without ``ttl``) and the source offset of the event that passed. ``max_keys``
bounds each partition: the least recently seen key is deleted from the store
too. After a restore the order is by first sighting.

Replays are recognised per key, by the stored offset, not by the store's
applied offset (a flush cut short by a crash may log some keys of a batch and
not others): the event at the stored offset passes again (its output may not
have been written), an event after it is a duplicate, and a key not stored is
new, so at-least-once replays neither lose that event's output nor let a
duplicate through.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import orjson

from ..core.message import Message
from ..state.stores import StateStore
from .partitioned import PartitionedStore, json_key

__all__ = ["SeenKeys", "key_bytes"]

Entry = tuple[float | None, int]  # (expires, offset of the event that passed)


def key_bytes(key: Hashable) -> bytes:
    """The store key of a dedupe key (orjson); TypeError for a key JSON cannot hold."""
    return json_key(key, "dedupe")


class SeenKeys(PartitionedStore):
    """The seen keys of one dedupe stage, per input partition; its partition listener."""

    def __init__(self, stage: str, max_keys: int, ttl: float | None, backend: str = "memory",
                 directory: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(stage, backend, directory)
        self.max_keys = max_keys
        self.ttl = ttl
        #: Wall clock (epoch seconds): expiry times outlive the process.
        self.clock = clock
        self._seen: dict[int, OrderedDict[bytes, Entry]] = {}

    def first(self, msg: Message, key: bytes) -> bool:
        """Whether ``msg`` (with dedupe key ``key``) passes: its key's first sighting in its partition."""
        partition = msg.partition if msg.partition is not None else -1
        offset = msg.offset if msg.offset is not None else -1
        store, seen = self._stores[partition], self._seen[partition]
        store.begin(offset)
        store.replaying = False  # replays are told apart per key, below
        now = self.clock()
        entry = seen.get(key)
        if entry is not None and (entry[0] is None or entry[0] > now):
            if offset <= entry[1]:
                return True  # the first sighting again (or one before it, forgotten since): pass it
            seen.move_to_end(key)
            return False
        if entry is not None:  # expired
            del seen[key]
            store.delete(key)
        expires = now + self.ttl if self.ttl is not None else None
        seen[key] = (expires, offset)
        store.set(key, orjson.dumps([expires, offset]))
        while len(seen) > self.max_keys:
            oldest, _ = seen.popitem(last=False)
            store.delete(oldest)
        return True

    # -- partition listener ----------------------------------------------------------------
    def load(self, partition: int, store: StateStore) -> None:
        """Read a restored partition's keys back, oldest sighting first."""
        entries = sorted(((k, orjson.loads(v)) for k, v in store.items()), key=lambda kv: kv[1][1])
        self._seen[partition] = OrderedDict((k, (expires, offset)) for k, (expires, offset) in entries)

    def drop(self, partition: int) -> None:
        self._seen.pop(partition, None)
