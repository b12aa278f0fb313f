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

    ``nbytes`` estimates the memory its events hold, for the byte bounds of
    channels (contract 1): the raw size the source read, set by the source or
    computed once by `size` (-1 until then). Derived batches keep it — an
    estimate, as a transform may grow or shrink its events.

    ``trace`` is where the batch is in its trace (the span of the stage that
    last handled it), set by the pipeline's `BatchTracer` only when tracing is
    on; derived batches keep it.
    """

    __slots__ = ("messages", "acks", "created", "nbytes", "trace")

    def __init__(self, messages: list[Message], acks: list[Ack] | tuple[Ack, ...] = (),
                 created: float = 0.0, nbytes: int = -1, trace: object = None) -> None:
        self.messages = messages
        self.acks = acks
        self.created = created
        self.nbytes = nbytes
        self.trace = trace

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def derive(self, messages: list[Message]) -> Batch:
        """A batch of other messages sharing this batch's acks (not retained), size estimate and trace."""
        return Batch(messages, self.acks, self.created, self.nbytes, self.trace)

    def size(self) -> int:
        """``nbytes``, estimated once from the messages if the source did not set it.

        The raw bytes of each message (or its value, when that is bytes or a
        string); other values count 0 — their batch is bounded in events only.
        """
        if self.nbytes < 0:
            self.nbytes = sum([len(m.raw) if m.raw is not None
                               else len(m.value) if isinstance(m.value, (bytes, str)) else 0
                               for m in self.messages])
        return self.nbytes

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
        nbytes = 0
        for b in batches:
            messages.extend(b.messages)
            acks.extend(b.acks)
            nbytes += b.size()
            if b.created and (not created or b.created < created):
                created = b.created
        return Batch(messages, acks, created, nbytes)

    def __repr__(self) -> str:
        return f"Batch({len(self.messages)} messages, {len(self.acks)} acks)"
