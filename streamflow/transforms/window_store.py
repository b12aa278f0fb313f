"""`WindowStore`: a `window` stage's open windows kept per input partition in a state store.

With a partitioned input (one Kafka topic) the `window` transform keeps its open
windows here instead of holding its inputs' acks (contract 8):

* **per input partition** — each partition has its own `Windows`, mirrored in
  a store of `streamflow.state.keyed` (one state named like the stage, logged
  to the compacted topic ``<pipeline>-<stage>-changelog``). A store key is a
  window key (orjson), its value ``[open windows, closing windows]`` with every
  aggregate state as JSON (`WindowFold.dump`); the reserved key `MAX_TIME`
  holds the partition's latest event time, so the watermark comes back too.
* **per batch** — the keys the batch changed are written once, at its end
  (`commit`), each with the offset of the last input folded into it, and the
  batch's acks are released once the changelog has them. So commits advance
  while windows stay open, and a restart restores them. An input at or below
  its key's stored offset is a replay and is not folded again: the offset is
  kept per key, not per store, because a flush cut short by a crash may log
  some keys of a batch and not others. The latest event time is logged after
  the keys (`StateStore.set_last`), so it is never ahead of them.
* **closing** — a window that closes stays in its key's stored value, as
  *closing*, until its output batch is written (an `Ack` of this store's own
  `AckTracker` travels with it); only then is it removed from the store. A
  crash before that restores it as closing and it is emitted again
  (at-least-once, like every output): no window result is lost.
* **assigned / revoked** — the partition's store is restored (`KeyedState`),
  then its windows, closing windows and latest event time are read back; on
  revoke what is written is logged first and the partition's windows dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Hashable
from pathlib import Path

import orjson

from ..core.acks import Ack, AckTracker
from ..core.batch import Batch
from ..core.message import Message
from ..state.stores import StateStore
from ..state.watermarks import WatermarkTracker
from ..state.windows import Assigner, TimeWindow, Windows
from .aggregations import hashable
from .partitioned import PartitionedStore, json_key
from .window_state import WindowFold, WindowState

__all__ = ["MAX_TIME", "Closed", "WindowStore"]

#: Store key of a partition's latest event time (window keys are orjson: never a NUL byte first).
MAX_TIME = b"\x00max_time"
#: Closed windows: (input partition, window key, window, state).
Closed = list[tuple[int, Hashable, TimeWindow, WindowState]]
_WRITTEN = "written"  # the one "partition" of the output tracker


class WindowStore(PartitionedStore):
    """Open windows per input partition, kept in a keyed store; the `window` stage's partition listener."""

    def __init__(self, stage: str, assigner: Assigner, fold: WindowFold, backend: str = "memory",
                 directory: Path | None = None, tracker: WatermarkTracker | None = None) -> None:
        super().__init__(stage, backend, directory)
        self.assigner = assigner
        self.fold = fold
        #: The stage's event-time watermark (None: processing time); restored per partition.
        self.tracker = tracker
        self.parts: dict[int, Windows[WindowState]] = {}
        self._dirty: dict[int, set[Hashable]] = {}
        self._stamps: dict[int, dict[Hashable, int]] = {}  # offset of the last input folded, per key
        self._closing: dict[int, dict[Hashable, list[tuple[TimeWindow, WindowState]]]] = {}
        self._restored: Closed = []
        self._times: set[int] = set()  # partitions whose latest event time moved
        self._written = AckTracker()
        self._pending: deque[tuple[int, list[tuple[int, Hashable, TimeWindow]]]] = deque()
        self._seq = 0

    # -- per event ----------------------------------------------------------------------
    def enter(self, msg: Message) -> Windows[WindowState]:
        """The windows of ``msg``'s partition (its store's applied offset moves on to ``msg``)."""
        partition = msg.partition if msg.partition is not None else -1
        self._stores[partition].begin(msg.offset if msg.offset is not None else -1)
        return self.parts[partition]

    def replayed(self, msg: Message, key: Hashable) -> bool:
        """Whether ``msg`` (of window key ``key``) is in ``key``'s windows already."""
        stamp = self._stamps[msg.partition or 0].get(key)
        return stamp is not None and msg.offset is not None and msg.offset <= stamp

    def touched(self, msg: Message, key: Hashable) -> None:
        """``msg`` changed ``key``'s windows: write them at the end of the batch."""
        partition = msg.partition or 0
        self._dirty[partition].add(key)
        self._stamps[partition][key] = msg.offset if msg.offset is not None else -1

    def observed(self, partitions: Collection[Hashable]) -> None:
        """The latest event time of ``partitions`` moved: write it at the end of the batch."""
        self._times.update(p for p in partitions if isinstance(p, int) and p in self._stores)

    # -- closing -------------------------------------------------------------------------
    def due(self, watermark: float | None) -> Closed:
        """The windows of every partition complete at ``watermark``, and those restored as closing."""
        closed, self._restored = self._restored, []
        if watermark is not None:
            for p, windows in self.parts.items():
                closed.extend((p, k, w, s) for k, w, s in windows.close(watermark))
        closed.sort(key=lambda c: (c[2].end, c[2].start))
        return closed

    def closing(self, closed: Closed) -> Ack:
        """Keep ``closed`` in the store until the returned ack (on their output batch) is released."""
        self._seq += 1
        for p, key, window, state in closed:
            self._closing[p].setdefault(key, []).append((window, state))
        self._pending.append((self._seq, [(p, key, window) for p, key, window, _ in closed]))
        return self._written.track(_WRITTEN, self._seq)

    def forget_written(self) -> None:
        """Remove the closing windows whose output is written (their keys are rewritten next)."""
        written = self._written.watermark(_WRITTEN)
        while self._pending and written is not None and self._pending[0][0] <= written:
            for p, key, window in self._pending.popleft()[1]:
                closing = self._closing.get(p, {}).get(key)
                if closing is None:
                    continue  # the partition was revoked meanwhile
                closing[:] = [(w, s) for w, s in closing if w != window]
                if not closing:
                    del self._closing[p][key]
                self._dirty[p].add(key)

    # -- writing -------------------------------------------------------------------------
    def write(self) -> bool:
        """Put every changed key (and latest event time) in its store; True if anything changed."""
        changed = False
        for p, keys in self._dirty.items():
            if not keys and p not in self._times:
                continue
            store, windows, closing, stamps = self._stores[p], self.parts[p], self._closing[p], self._stamps[p]
            store.replaying = False  # these writes belong to the batch, not to a replayed event
            for key in keys:
                open_ = windows.dump(key, self.fold.dump)
                leaving = [[w.start, w.end, self.fold.dump(s)] for w, s in closing.get(key, ())]
                if open_ is None and not leaving:
                    store.delete(json_key(key, "window"))
                    stamps.pop(key, None)  # its replays are behind the logged watermark: late
                else:
                    store.set(json_key(key, "window"), orjson.dumps([open_, leaving, stamps.get(key, -1)]))
            keys.clear()
            changed = True
        for p in self._times:
            latest = self.tracker.max_time(p) if self.tracker is not None else None
            if latest is not None:
                self._stores[p].replaying = False
                self._stores[p].set_last(MAX_TIME, orjson.dumps(latest))
                changed = True
        self._times.clear()
        return changed

    def commit(self, batch: Batch) -> None:
        """Write the batch's changes; ``batch``'s positions are committed once the changelog has them."""
        self.forget_written()
        self.write()
        self.keyed.hold_until_flushed(batch)

    # -- partition listener ----------------------------------------------------------------
    def load(self, partition: int, store: StateStore) -> None:
        """Read a restored partition's windows, closing windows and latest event time back."""
        windows: Windows[WindowState] = Windows(self.assigner, self.fold)
        self.parts[partition] = windows
        if self.tracker is not None:
            self.tracker.assign([partition])  # it holds the watermark back until its first event
        self._dirty[partition], self._closing[partition], self._stamps[partition] = set(), {}, {}
        for raw_key, raw in store.items():
            if raw_key == MAX_TIME:
                if self.tracker is not None:
                    self.tracker.observe(partition, orjson.loads(raw))
                continue
            key = hashable(orjson.loads(raw_key))
            open_, closing, self._stamps[partition][key] = orjson.loads(raw)
            if open_ is not None:
                windows.load(key, open_, self.fold.load)
            self._restored.extend((partition, key, TimeWindow(start, end), self.fold.load(state))
                                  for start, end, state in closing)

    async def settle(self) -> None:
        """Log what is written so far (before a revocation)."""
        self.commit(Batch([]))
        await self.keyed.drain()

    def drop(self, partition: int) -> None:
        for table in (self.parts, self._dirty, self._closing, self._stamps):
            table.pop(partition, None)
        self._times.discard(partition)
        self._restored = [c for c in self._restored if c[0] != partition]
        if self.tracker is not None:
            self.tracker.forget([partition])

    async def close(self) -> None:
        """Log the last changes (windows written since the last batch), then close the stores."""
        if self._stores:
            self.commit(Batch([]))
        await super().close()

    def __len__(self) -> int:
        """Open windows over every partition."""
        return sum(len(w) for w in self.parts.values())

