"""Acknowledgement tracking: which source positions are safe to checkpoint.

A source registers each batch it emits with its `AckTracker` and gets back an
`Ack` handle: a reference count on that batch's source position. Every stage
that derives batches from it retains the handle once per extra output (fan-out,
routing, dead-lettering) and every terminal event releases it once (a sink's
durable write, a filter dropping everything, a dead-letter write). When the
count reaches zero, the position is done.

The tracker keeps the handles of each partition in source order and exposes,
per partition, the highest position below which *everything* is done — the
commit watermark of contract 2 — however out of order the completions come.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable, Iterable
from typing import Any


class Ack:
    """Reference count on one source batch's position."""

    __slots__ = ("_ledger", "partition", "position", "refs")

    def __init__(self, ledger: _Ledger, partition: Hashable, position: Any) -> None:
        self._ledger = ledger
        self.partition = partition
        self.position = position
        self.refs = 1

    def retain(self, n: int = 1) -> None:
        """Add ``n`` outstanding references (one per extra derived batch)."""
        self.refs += n

    def release(self) -> None:
        """Drop one reference; at zero the position is done."""
        self.refs -= 1
        if self.refs == 0:
            self._ledger.advance()
        elif self.refs < 0:
            raise RuntimeError(f"ack for {self.partition}@{self.position} released too often")

    @property
    def done(self) -> bool:
        return self.refs <= 0

    def __repr__(self) -> str:
        return f"Ack({self.partition}@{self.position}, refs={self.refs})"


class _Ledger:
    """The in-order handles of one partition."""

    __slots__ = ("pending", "released", "tracker", "partition")

    def __init__(self, tracker: AckTracker, partition: Hashable) -> None:
        self.tracker = tracker
        self.partition = partition
        self.pending: deque[Ack] = deque()
        self.released: Any = None

    def advance(self) -> None:
        pending = self.pending
        moved = False
        while pending and pending[0].refs <= 0:
            self.released = pending.popleft().position
            moved = True
        if moved and self.tracker._ledgers.get(self.partition) is self:
            self.tracker._dirty.add(self.partition)
            self.tracker._notify()


class AckTracker:
    """Per-source ledger of positions awaiting acknowledgement."""

    def __init__(self) -> None:
        self._ledgers: dict[Hashable, _Ledger] = {}
        self._dirty: set[Hashable] = set()
        self._event: asyncio.Event | None = None

    def track(self, partition: Hashable, position: Any) -> Ack:
        """Register the next batch of ``partition``; ``position`` is where to resume after it."""
        ledger = self._ledgers.get(partition)
        if ledger is None:
            ledger = self._ledgers[partition] = _Ledger(self, partition)
        ack = Ack(ledger, partition, position)
        ledger.pending.append(ack)
        return ack

    def watermark(self, partition: Hashable) -> Any:
        """Highest position of ``partition`` below which everything is acknowledged."""
        ledger = self._ledgers.get(partition)
        return ledger.released if ledger else None

    def watermarks(self) -> dict[Hashable, Any]:
        """Every partition's watermark (partitions with nothing released are left out)."""
        return {p: lg.released for p, lg in self._ledgers.items() if lg.released is not None}

    def take_committable(self) -> dict[Hashable, Any]:
        """Watermarks that moved since the last call: what a commit should write now."""
        out = {p: self._ledgers[p].released for p in self._dirty if p in self._ledgers}
        self._dirty.clear()
        return out

    def restore_dirty(self, partitions: Iterable[Hashable]) -> None:
        """Mark partitions as still to be committed (after a failed commit)."""
        self._dirty.update(p for p in partitions if p in self._ledgers)

    def pending(self, partitions: Iterable[Hashable] | None = None) -> int:
        """Number of batches not yet fully acknowledged."""
        keys = self._ledgers.keys() if partitions is None else partitions
        return sum(len(self._ledgers[p].pending) for p in keys if p in self._ledgers)

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Stop tracking partitions (revoked): late acks for them change nothing."""
        for p in partitions:
            self._ledgers.pop(p, None)
            self._dirty.discard(p)

    def _notify(self) -> None:
        if self._event is not None:
            self._event.set()

    async def wait_drained(self, partitions: Iterable[Hashable] | None = None,
                           timeout: float | None = None) -> bool:
        """Wait until nothing of ``partitions`` is pending; False on timeout."""
        keys = None if partitions is None else list(partitions)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.pending(keys):
            if self._event is None:
                self._event = asyncio.Event()
            self._event.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return not self.pending(keys)
        return True
