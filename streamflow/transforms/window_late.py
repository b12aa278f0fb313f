"""Where a `window` stage's late events go: the ``late`` output.

An event is *late* when it is behind the watermark and every window it belongs
to is closed. It is always counted (`StageStats.late`, exported as
``streamflow_late_events_total``), then, by ``late``:

* ``drop`` — dropped, and counted as filtered too;
* ``error`` — raised as `LateEvent`, so the stage's ``on_error`` decides (a
  ``dead_letter`` policy keeps it, ``fail`` stops the pipeline);
* ``dead_letter`` — written to the pipeline's dead-letter sink as a
  dead-letter record with error ``LateEvent`` (whatever ``on_error`` says);
* ``{sink: name}`` — written, unchanged, to the sink of that name, which gets
  only these events (the router leaves it out: `Transform.side_outputs`).

A late event sent on holds its input batch's positions uncommitted until
its sink has written it (contract 2).
"""

from __future__ import annotations

from typing import Literal

from ..core.batch import Batch
from ..core.errors import dead_letter_message
from ..core.message import Message
from ..core.stage import StageContext
from .window_config import LateSink

__all__ = ["LateEvent", "LateOutput"]


class LateEvent(Exception):
    """An event arrived after all its windows closed."""


class LateOutput:
    """The ``late`` output of one window stage: counts late events and sends them where it says."""

    def __init__(self, stage: str, late: Literal["drop", "error", "dead_letter"] | LateSink) -> None:
        self.stage = stage
        self.late = late
        self.ctx: StageContext | None = None

    def open(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.stage = ctx.stage

    def take(self, msg: Message, t: float, watermark: float | None, out: list[Message]) -> None:
        """Count the late ``msg``; drop it, raise `LateEvent`, or add what is to be sent to ``out``."""
        ctx, late = self.ctx, self.late
        if ctx is not None:
            ctx.stats.late += 1
        if late == "drop":
            if ctx is not None:
                ctx.stats.filtered += 1
            return
        error = LateEvent(f"event time {t} is behind the watermark {watermark}: "
                          "every window it belongs to is closed")
        if late == "error":
            raise error
        out.append(dead_letter_message(msg, error, self.stage, 1) if late == "dead_letter" else msg)

    async def send(self, late: list[Message], batch: Batch) -> None:
        """Write what `take` kept, holding ``batch``'s positions until it is written."""
        if not late:
            return
        ctx = self.ctx
        if ctx is None:
            raise RuntimeError(f"stage {self.stage!r} sends late events before it is opened")
        if isinstance(self.late, LateSink):
            put = ctx.outputs[self.late.sink]
        else:
            if ctx.dead_letter is None:
                raise RuntimeError(f"stage {self.stage!r} has late: dead_letter but the pipeline has no "
                                   "dead_letter sink")
            put = ctx.dead_letter
            ctx.stats.dead_lettered += len(late)
        batch.retain()
        await put(Batch(late, batch.acks, batch.created))
