"""map, filter and flat_map: user functions applied to each event's value."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..core.batch import Batch
from ..core.message import Message
from ..core.refs import FunctionRef
from ..core.registry import TRANSFORMS
from ..core.stage import TransformConfig
from .base import EventTransform, is_async_callable


class FunctionConfig(TransformConfig):
    fn: FunctionRef = Field(description="the user function, `module:function` in YAML")


class _FunctionTransform(EventTransform):
    Config = FunctionConfig
    config: FunctionConfig

    def __init__(self, config: Any = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.fn = self.config.fn
        self.is_async = is_async_callable(self.fn)
        if self.is_async:
            # async functions: `concurrency` events in flight inside a batch, and as many
            # batches in flight in the engine so slow calls overlap across batches too
            self.concurrency = self.config.concurrency

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
