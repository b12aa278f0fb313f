"""dedupe: drop events whose key was already seen within a bounded window.

With a Kafka input the seen keys are kept per input partition in a state store
(`SeenKeys`), so deduplication survives a restart and a rebalance; otherwise
in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..core.batch import Batch
from ..core.message import Message
from ..core.refs import FunctionRef
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig, StageContext
from .base import EventTransform, is_async_callable
from .cache import LRUCache
from .dedupe_store import SeenKeys, key_bytes
from .fields import path_getter
from .partitioned import StoreBacked, owned


class DedupeConfig(EventTransformConfig):
    key: str | None = Field(None, description="event field (dotted path) identifying duplicates")
    key_fn: FunctionRef | None = Field(None, description="`module:function` computing the identity of a "
                                                         "value (instead of `key`); must return a "
                                                         "hashable value")
    max_keys: int = Field(100_000, ge=1, description="keys remembered (per input partition with a Kafka "
                                                     "input); the least recently seen is forgotten first")
    ttl: float | None = Field(None, gt=0, description="seconds a key is remembered after its first "
                                                      "sighting (null: until evicted by `max_keys`)")
    state_backend: Literal["memory", "disk"] = Field(
        "memory", description="with a Kafka input, where the seen keys live (`disk`: RocksDB); either is "
                              "restored from the `<pipeline>-<stage>-changelog` topic on start")
    state_dir: Path | None = Field(None, description="directory of the `disk` state (default: a temporary one)")

    @model_validator(mode="after")
    def _check(self) -> DedupeConfig:
        if (self.key is None) == (self.key_fn is None):
            raise ValueError("dedupe needs exactly one of `key` or `key_fn`")
        if self.key is not None:
            path_getter(self.key)  # rejects malformed paths
        if self.key_fn is not None and is_async_callable(self.key_fn):
            raise ValueError("dedupe `key_fn` must be a plain (sync) function")
        return self


@TRANSFORMS.register("dedupe")
class Dedupe(StoreBacked[SeenKeys], EventTransform[DedupeConfig]):
    """Pass the first event of each key; drop repeats seen within ``ttl`` and ``max_keys``.

    Dropped events are counted as filtered (their acks travel on with the batch).
    An event without a key goes to the stage's error policy. With a Kafka input
    the keys are remembered per input partition, in a state store restored on start.
    """

    def setup(self) -> None:
        cfg = self.config
        key_of = path_getter(cfg.key) if cfg.key is not None else cfg.key_fn
        assert key_of is not None  # the config requires `key` or `key_fn`
        self._key_of = key_of
        #: The remembered keys (an LRU; ``seen.clock`` drives ``ttl``), without a Kafka input.
        self.seen = LRUCache(cfg.max_keys, cfg.ttl)

    def new_store(self) -> SeenKeys:
        cfg = self.config
        return SeenKeys(self.name, cfg.max_keys, cfg.ttl, cfg.state_backend, cfg.state_dir)

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.bind_store(self.name, ctx)

    # -- per event ------------------------------------------------------------------------
    def call(self, msg: Message) -> Any:
        key = self._key_of(msg.value)
        if key is None:
            raise KeyError(f"event has no dedupe key {self.config.key or 'from key_fn'}")
        hash(key)  # an unhashable key fails here, under the error policy
        return key_bytes(key) if self.stored is not None else key

    def emit(self, msg: Message, key: Any, out: list[Message]) -> None:
        store = self.stored
        if store.first(msg, key) if store is not None else self.seen.add(key):
            out.append(msg)

    def fast(self, batch: Batch) -> Batch:
        # compute every key first: a key that raises leaves nothing remembered twice
        call, add = self.call, self.seen.add
        msgs = batch.messages
        keys = [call(m) for m in msgs]
        return batch.derive([m for m, k in zip(msgs, keys, strict=True) if add(k)])

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        store = self.stored
        if store is None:
            return await super().process(batch)
        out = await self._per_event(owned(batch, store.owns))
        store.keyed.hold_until_flushed(out)
        return out

    async def flush(self) -> list[Batch]:
        if self.stored is not None:
            await self.stored.keyed.drain()
        return []
