"""`Batch`: the unit that moves between stages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .acks import Ack
from .message import Message


class Batch:
    """A list of messages plus the ack handles of the source positions they came from.

    Channels carry batches, never single events. A stage that turns one batch
    into several calls `retain` once per extra batch; a batch that ends (written,
    filtered to nothing, dead-lettered) calls `ack`.
    """

    __slots__ = ("messages", "acks", "created")

    def __init__(self, messages: list[Message], acks: list[Ack] | tuple[Ack, ...] = (),
                 created: float = 0.0) -> None:
        self.messages = messages
        self.acks = acks
        self.created = created

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def derive(self, messages: list[Message]) -> Batch:
        """A batch of other messages sharing this batch's acks (not retained)."""
        return Batch(messages, self.acks, self.created)

    def retain(self, n: int = 1) -> None:
        for a in self.acks:
            a.retain(n)

    def ack(self) -> None:
        """Release this batch's hold on its source positions."""
        for a in self.acks:
            a.release()

    @staticmethod
    def merge(batches: Iterable[Batch]) -> Batch:
        """One batch holding the messages and acks of several (acks move, not copied)."""
        messages: list[Message] = []
        acks: list[Ack] = []
        created = 0.0
        for b in batches:
            messages.extend(b.messages)
            acks.extend(b.acks)
            if b.created and (not created or b.created < created):
                created = b.created
        return Batch(messages, acks, created)

    def __repr__(self) -> str:
        return f"Batch({len(self.messages)} messages, {len(self.acks)} acks)"
