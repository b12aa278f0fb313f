"""The three stage protocols — `Source`, `Transform`, `Sink` — and what they share.

Every component has a pydantic ``Config`` (declared beside its code, unknown
keys rejected) and is registered by name. Constructing one validates its
config and does no I/O; `open` is where connections and files are opened.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from .acks import AckTracker
from .batch import Batch
from .errors import ErrorHandler, ErrorPolicy
from .stats import StageStats


class ComponentConfig(BaseModel):
    """Keys every component accepts."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str | None = Field(None, description="stage name in logs, metrics and graphs (default: its type)")


class TransformConfig(ComponentConfig):
    """Keys every transform stage accepts."""

    on_error: ErrorPolicy = Field(default_factory=ErrorPolicy,
                                  description="what to do with an event this stage fails on")
    concurrency: int = Field(1, ge=1, description="events (async functions) or batches in flight at once")
    ordered: bool = Field(True, description="keep input order when concurrency > 1")


class SourceConfig(ComponentConfig):
    """Keys every source accepts."""

    on_error: ErrorPolicy = Field(default_factory=ErrorPolicy,
                                  description="what to do with an event that fails to decode")


class StageContext:
    """What the runner hands a stage when it opens: identity, counters, error handling."""

    def __init__(self, pipeline: str, stage: str, stats: StageStats,
                 dead_letter: Callable[[Batch], Awaitable[None]] | None = None,
                 settings: Any = None) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.stats = stats
        self.dead_letter = dead_letter
        self.settings = settings
        self.log = logging.getLogger(f"streamflow.stage.{stage}")

    def error_handler(self, policy: ErrorPolicy) -> ErrorHandler:
        return ErrorHandler(self.stage, policy, self.stats, self.dead_letter, self.pipeline)


class Component:
    """Base of sources, transforms and sinks: a validated config and a name."""

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    type_name: ClassVar[str] = "component"
    kind: ClassVar[str] = "component"

    def __init__(self, config: ComponentConfig | None = None, /, **options: Any) -> None:
        if config is None:
            config = self.Config(**options)
        elif options:
            config = config.model_copy(update=options)
        self.config = config
        self.name: str = config.name or self.type_name
        self.ctx: StageContext | None = None

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> Component:
        """Build from a config mapping (as YAML gives it)."""
        return cls(cls.Config.model_validate(data))

    def error_policies(self) -> list[ErrorPolicy]:
        """The error policies this component applies (the pipeline checks dead-letter use)."""
        policy = getattr(self.config, "on_error", None)
        return [policy] if isinstance(policy, ErrorPolicy) else []

    def describe(self) -> str:
        """One line for graphs and progress output."""
        return f"{self.name} ({self.type_name})" if self.name != self.type_name else self.name

    async def open(self, ctx: StageContext) -> None:
        """Acquire resources (connections, files). Called once before the first batch."""
        self.ctx = ctx

    async def close(self) -> None:
        """Release resources. Called once at the end, also after a failure."""

    @property
    def ready(self) -> bool:
        """True while connected and able to work (drives /readyz)."""
        return True


class Source(Component):
    """Async producer of batches that owns the checkpoint of its position.

    Each batch a source returns from `read` carries one `Ack` from
    ``self.tracker`` per source position it covers. `commit` persists the
    positions the tracker released (contract 2).
    """

    kind = "source"

    def __init__(self, config: ComponentConfig | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.tracker = AckTracker()

    async def read(self) -> Batch | None:
        """The next batch, or None once the source is exhausted. May be cancelled."""
        raise NotImplementedError

    async def commit(self) -> None:
        """Persist the acknowledged positions (`AckTracker.take_committable`)."""
        positions = self.tracker.take_committable()
        if positions:
            try:
                await self.checkpoint(positions)
            except BaseException as exc:
                self.tracker.restore_dirty(positions)
                if self.ctx is not None and isinstance(exc, Exception):
                    self.ctx.stats.commit_errors += 1
                raise
            if self.ctx is not None:
                self.ctx.stats.commits += 1

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        """Write ``positions`` (partition -> resume position) durably. Default: nothing."""

    def lag(self) -> dict[Any, int]:
        """Events known to be waiting upstream per partition (for metrics)."""
        return {}


class Transform(Component):
    """Async batch -> batch(es).

    `process` returns a batch, a list of batches, or None. Each returned batch
    holds one reference on each of its acks: a transform that passes its input
    on (or a `Batch.derive` of it) needs no bookkeeping; one that splits a
    batch in k retains k-1 times; one that holds events back (windows,
    batching) keeps the acks until it emits them and returns None meanwhile.
    Empty returned batches are acked by the engine.
    """

    kind = "transform"

    #: In-flight batches the engine may run through `process` at once.
    concurrency: int = 1
    #: Whether outputs must leave in input order when ``concurrency > 1``.
    ordered: bool = True
    #: Seconds between calls of `tick` (None: never). For transforms that emit on a
    #: timer (batch timeouts, processing-time windows); honoured when ``concurrency`` is 1.
    tick_interval: float | None = None

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        raise NotImplementedError

    async def capacity(self) -> None:
        """Wait until another batch would be put to work at once (called before each read when
        ``concurrency > 1``). Default: at once. A stage with its own internal queue (per-event
        concurrency) waits while that queue is long, so read-ahead stays small."""

    async def tick(self) -> Batch | list[Batch] | None:
        """Emit what became due since the last call; called every `tick_interval` seconds."""
        return None

    async def flush(self) -> list[Batch]:
        """Emit what is held back, at end of stream or shutdown."""
        return []


class Sink(Component):
    """Async consumer of batches.

    `write` returns once the batch is durably written; the engine then acks
    it. A sink that acknowledges later (interval flush, pipelined producer)
    sets ``acks_itself = True`` and calls `Batch.ack` itself, and `flush`
    must make everything written durable and acked.
    """

    kind = "sink"
    acks_itself: ClassVar[bool] = False

    async def write(self, batch: Batch) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        """Make everything written so far durable (and acked, if `acks_itself`)."""
