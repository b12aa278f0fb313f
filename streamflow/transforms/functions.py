"""map, filter and flat_map: user functions applied to each event's value."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..core.batch import Batch
from ..core.message import Message
from ..core.refs import FunctionRef
from ..core.refs import name_of as _name_of
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig
from .base import EventTransform, is_async_callable


class FunctionConfig(EventTransformConfig):
    fn: FunctionRef = Field(description="the user function, `module:function` in YAML")


class _FunctionTransform(EventTransform[FunctionConfig]):
    """A user function applied to each event's value.

    An async function runs with up to ``concurrency`` events in flight inside
    a batch, and as many batches in flight in the engine, so slow calls
    overlap across batches too.
    """

    def setup(self) -> None:
        self.fn = self.config.fn
        self.is_async = is_async_callable(self.fn)

    def serial_reason(self) -> str | None:
        if self.is_async:
            return None
        return (f"fn {_name_of(self.fn)} is a plain function, which runs one event at a time on the "
                "event loop; make it `async def` to have several calls in flight")

    def call(self, msg: Message) -> Any:
        return self.fn(msg.value)


@TRANSFORMS.register("map")
class Map(_FunctionTransform):
    """Replace each event's value by ``fn(value)``."""

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        msg.value = result
        out.append(msg)

    def fast(self, batch: Batch) -> Batch:
        fn = self.fn
        msgs = batch.messages
        values = [fn(m.value) for m in msgs]
        for m, v in zip(msgs, values, strict=False):
            m.value = v
        return batch


@TRANSFORMS.register("filter")
class Filter(_FunctionTransform):
    """Keep only the events for which ``fn(value)`` is truthy."""

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        if result:
            out.append(msg)

    def fast(self, batch: Batch) -> Batch:
        fn = self.fn
        return batch.derive([m for m in batch.messages if fn(m.value)])


@TRANSFORMS.register("flat_map")
class FlatMap(_FunctionTransform):
    """Replace each event by one event per item of the iterable ``fn(value)`` (none drops it)."""

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        if result is None:
            return
        for value in result:
            out.append(msg.copy(value=value))

    def fast(self, batch: Batch) -> Batch:
        fn = self.fn
        out: list[Message] = []
        for m in batch.messages:
            result = fn(m.value)
            if result is not None:
                out.extend(m.copy(value=v) for v in result)
        return batch.derive(out)
