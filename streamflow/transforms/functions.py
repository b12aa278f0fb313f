"""map, filter and flat_map: user functions applied to each event's value, optionally with keyed state.

A stage that declares ``state`` (``state: {balance: value}``) calls its
function as ``fn(value, state)``: ``state.balance`` is a `ValueState` (or, for
``map``, a `MapState`) bound to the event's key. The state is partitioned like
the Kafka input and restored from a changelog topic (`streamflow.state.keyed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..core.batch import Batch
from ..core.message import Message
from ..core.partitions import PartitionListener, StateRestore
from ..core.refs import FunctionRef
from ..core.refs import name_of as _name_of
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig, StageContext
from ..state.keyed import KeyedState, StateKind
from .base import EventTransform, is_async_callable


class FunctionConfig(EventTransformConfig):
    fn: FunctionRef = Field(description="the user function, `module:function` in YAML")
    state: dict[str, StateKind] | None = Field(
        None, min_length=1, description="keyed state the function gets as a second argument: name -> `value` or `map`; "
                          "needs a Kafka source (the state is partitioned like it, keyed by the event key)")
    state_backend: Literal["memory", "disk"] = Field(
        "memory", description="where the state lives: `memory`, or `disk` (RocksDB) for state larger than "
                              "memory; either is restored from the changelog topic on start")
    state_dir: Path | None = Field(None, description="directory of the `disk` state (default: a temporary one)")


class _FunctionTransform(EventTransform[FunctionConfig]):
    """A user function applied to each event's value.

    An async function runs with up to ``concurrency`` events in flight inside
    a batch, and as many batches in flight in the engine, so slow calls
    overlap across batches too.
    """

    def setup(self) -> None:
        c = self.config
        self.fn = c.fn
        self.is_async = is_async_callable(self.fn)
        self.keyed: KeyedState | None = None
        if c.state is not None:
            self.keyed = KeyedState(c.name or self.type_name, c.state, c.state_backend, c.state_dir)

    @property
    def cpu_only(self) -> bool:
        return self.keyed is None and super().cpu_only  # keyed state awaits its changelog

    def serial_reason(self) -> str | None:
        if self.keyed is not None:
            return "its keyed state is applied in input order, one event at a time"
        if self.is_async:
            return None
        return (f"fn {_name_of(self.fn)} is a plain function, which runs one event at a time on the "
                "event loop; make it `async def` to have several calls in flight")

    def partition_listener(self) -> PartitionListener | None:
        return self.keyed

    def state_restores(self) -> list[StateRestore]:
        return list(self.keyed.restores) if self.keyed is not None else []

    @property
    def ready(self) -> bool:
        """False while keyed state is being restored."""
        return self.keyed is None or self.keyed.ready

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        if self.keyed is not None:
            self.keyed.stage = self.name
            self.keyed.on_failure = ctx.fail

    async def close(self) -> None:
        if self.keyed is not None:
            await self.keyed.close()

    def call(self, msg: Message) -> Any:
        if self.keyed is not None:
            scope = self.keyed.enter(msg)
            if self.is_async:
                return scope.finishing(self.fn(msg.value, scope))
            try:
                return self.fn(msg.value, scope)
            finally:
                scope.finish()
        return self.fn(msg.value)

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        keyed = self.keyed
        if keyed is None:
            return await super().process(batch)
        if not all(keyed.owns(m) for m in batch.messages):
            # stragglers of a partition revoked before they drained: its new owner reads them again
            batch = batch.derive([m for m in batch.messages if keyed.owns(m)])
        out = await self._per_event(batch)
        keyed.hold_until_flushed(out)
        return out

    async def flush(self) -> list[Batch]:
        if self.keyed is not None:
            await self.keyed.drain()
        return []


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
