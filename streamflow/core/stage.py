"""The three stage kinds — `Source`, `Transform`, `Sink` — and the `Component` shape they share.

A component is typed by its pydantic config model and declares it once, in
its base class: ``class Dedupe(EventTransform[DedupeConfig])``. The model
becomes the class's ``Config`` (what YAML is validated against, unknown keys
rejected) and ``self.config`` is typed as it. Constructing a component
validates its config and does no I/O; `Component.setup` derives working
attributes from the config, `open` is where connections and files are opened.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from pydantic import ConfigDict, Field, ValidationError

from .acks import AckTracker
from .batch import Batch
from .configs import ConfigModel
from .errors import ComponentConfigError, ErrorHandler, ErrorPolicy
from .stats import StageStats

if TYPE_CHECKING:
    from .partitions import PartitionListener, StateRestore
    from .settings import PipelineSettings


class ComponentConfig(ConfigModel):
    """Keys every component accepts."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str | None = Field(None, description="stage name in logs, metrics and graphs (default: its type)")


class TransformConfig(ComponentConfig):
    """Keys every transform accepts."""

    concurrency: int = Field(1, ge=1, description="events and batches in flight at once (async functions; a "
                                                  "transform that works one batch at a time rejects more than 1)")
    ordered: bool = Field(True, description="keep input order when concurrency > 1")


class EventTransformConfig(TransformConfig):
    """Keys of transforms that work event by event and so may fail on one event."""

    on_error: ErrorPolicy = Field(default_factory=ErrorPolicy,
                                  description="what to do with an event this stage fails on")


class SourceConfig(ComponentConfig):
    """Keys every source accepts."""

    on_error: ErrorPolicy = Field(default_factory=ErrorPolicy,
                                  description="what to do with an event that fails to decode")


C = TypeVar("C", bound=ComponentConfig)
TC = TypeVar("TC", bound=TransformConfig)


class StageContext:
    """What the runner hands a stage when it opens: identity, counters, error handling."""

    def __init__(self, pipeline: str, stage: str, stats: StageStats,
                 dead_letter: Callable[[Batch], Awaitable[None]] | None = None,
                 settings: PipelineSettings | None = None,
                 on_failure: Callable[[BaseException], None] | None = None,
                 outputs: Mapping[str, Callable[[Batch], Awaitable[None]]] | None = None) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.stats = stats
        self.dead_letter = dead_letter
        self.settings = settings
        self.on_failure = on_failure
        #: The sinks this stage writes to directly by name (its `Transform.side_outputs`).
        self.outputs = dict(outputs or {})
        self.log = logging.getLogger(f"streamflow.stage.{stage}")

    def fail(self, error: BaseException) -> None:
        """Fail the pipeline from outside the stage's own calls (a sink's background delivery).

        The runner stops at once, as when a stage raises: nothing unacknowledged
        is committed and the run exits 1. Errors raised by `read`, `process` or
        `write` need no call: the runner sees them.
        """
        if self.on_failure is not None:
            self.on_failure(error)

    def delivered(self, events: int, batches: int = 1) -> None:
        """Count ``events`` as durably written (a sink with ``counts_delivered`` calls it when it acks)."""
        stats = self.stats
        stats.events_out += events
        stats.batches_out += batches
        stats.last_event_at = time.monotonic()

    def error_handler(self, policy: ErrorPolicy) -> ErrorHandler:
        return ErrorHandler(self.stage, policy, self.stats, self.dead_letter, self.pipeline)


def _config_model(cls: type) -> type[ComponentConfig] | None:
    """The config model ``cls`` names in its bases (``Base[SomeConfig]``), if any."""
    for base in getattr(cls, "__orig_bases__", ()):
        if get_origin(base) is None:
            continue
        for arg in get_args(base):
            if isinstance(arg, type) and issubclass(arg, ComponentConfig):
                return arg
    return None


class Component(ABC, Generic[C]):
    """Base of sources, transforms and sinks: a validated, typed config and a name.

    Build one from a config object, from keyword options, or both (options
    override the object's values)::

        FileSink(FileSinkConfig(path="out.jsonl"))
        FileSink(path="out.jsonl")
    """

    #: The config model, taken from the class's generic base (``Sink[MyConfig]``).
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    #: The name this class is registered under (``type:`` in YAML); set by the registry.
    type_name: ClassVar[str] = "component"
    kind: ClassVar[str] = "component"

    config: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = _config_model(cls)
        if model is not None:
            cls.Config = model

    def __init__(self, config: C | None = None, /, **options: Any) -> None:
        if config is None or options:
            given = {} if config is None else {key: getattr(config, key) for key in config.model_fields_set}
            try:
                config = cast(C, self.Config.model_validate({**given, **options}))
            except ValidationError as exc:
                raise ComponentConfigError.of(self._title(), exc) from None
        self.config = config
        self.name: str = config.name or self.type_name
        self.ctx: StageContext | None = None
        self.setup()

    @classmethod
    def _title(cls) -> str:
        """``sink 'file'``: the kind and type name, as errors name a component."""
        registered = "type_name" in vars(cls) or cls.type_name != Component.type_name
        return f"{cls.kind} {cls.type_name!r}" if registered else f"{cls.kind} {cls.__qualname__}"

    def setup(self) -> None:
        """Derive working attributes from ``self.config``; no I/O (that is `open`'s job).

        Called once by the constructor. A ``ValueError`` raised here is a config error.
        """

    def check_inputs(self) -> list[tuple[str, str]]:
        """Inputs this component needs that are missing, as ``(field, problem)`` pairs.

        `streamflow validate` and `streamflow run` report them as config errors
        before anything is opened (a file source whose ``path`` does not exist).
        Looks at the local file system only; connections are `open`'s job.
        """
        return []

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


class Source(Component[C]):
    """Async producer of batches that owns the checkpoint of its position.

    Each batch a source returns from `read` carries one `Ack` from
    ``self.tracker`` per source position it covers. `commit` persists the
    positions the tracker released (contract 2).
    """

    kind = "source"

    def __init__(self, config: C | None = None, /, **options: Any) -> None:
        self.tracker = AckTracker()
        super().__init__(config, **options)

    @abstractmethod
    async def read(self) -> Batch | None:
        """The next batch, or None once the source is exhausted. May be cancelled."""

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

    async def commit_final(self) -> None:
        """The last commit of a run (after a drain, or after an abort). Default: `commit`."""
        await self.commit()

    def exactly_once_problem(self) -> str | None:
        """Why this source cannot take part in ``delivery: exactly_once`` (None: it can)."""
        return "only Kafka sources can commit their offsets in a Kafka transaction"

    def scale_out_problem(self) -> str | None:
        """Why several processes of this pipeline (`streamflow run --workers N`) cannot share this source's
        input (None: they can, as the members of a Kafka consumer group do)."""
        return (f"a {self.type_name} source has one input that several processes cannot share "
                "(each would read all of it); run it with --workers 1")

    def as_worker(self, index: int) -> None:
        """Become worker ``index`` of several processes sharing the input (`scale_out_problem` is None).

        Called before `open`; a source whose identity must differ per process (a static group member id)
        derives it here. Default: nothing.
        """

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        """Write ``positions`` (partition -> resume position) durably. Default: nothing."""

    def lag(self) -> dict[Any, int]:
        """Events known to be waiting upstream per partition (for metrics)."""
        return {}

    def partitioned_input_problem(self, topics: int = 1) -> str | None:
        """Why this source cannot feed a stage with keyed state over ``topics`` partitioned inputs
        (None: it can)."""
        return "it is not a partitioned (Kafka) input"

    def add_partition_listener(self, listener: PartitionListener) -> None:
        """Tell ``listener`` of every partition assignment and revocation (partitioned sources only)."""
        raise TypeError(f"source {self.name!r}: {self.partitioned_input_problem()}")


class Transform(Component[TC]):
    """Async batch -> batch(es).

    `process` returns a batch, a list of batches, or None. Each returned batch
    holds one reference on each of its acks: a transform that passes its input
    on (or a `Batch.derive` of it) needs no bookkeeping; one that splits a
    batch in k retains k-1 times; one that holds events back (windows,
    batching) keeps the acks until it emits them and returns None meanwhile.
    Empty returned batches are acked by the engine.

    ``concurrency`` and ``ordered`` come from the config of every transform.
    One that cannot run more than one batch at a time says why in
    `serial_reason`, and a config asking for more is rejected with that reason.
    """

    kind = "transform"

    #: Seconds between calls of `tick` (None: never). For transforms that emit on a
    #: timer (batch timeouts, processing-time windows); honoured when ``concurrency`` is 1.
    tick_interval: float | None = None

    def __init__(self, config: TC | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        #: In-flight batches the engine may run through `process` at once.
        self.concurrency: int = self.config.concurrency
        #: Whether outputs must leave in input order when ``concurrency > 1``.
        self.ordered: bool = self.config.ordered
        reason = self.serial_reason()
        if self.concurrency > 1 and reason is not None:
            raise ValueError(f"{self.type_name} does not support `concurrency` above 1: {reason}")

    def serial_reason(self) -> str | None:
        """Why this stage runs one batch at a time (None: it may run ``concurrency`` at once)."""
        return "it processes one batch at a time, in order"

    @property
    def cpu_only(self) -> bool:
        """Whether `process` only computes: it waits on no I/O and no timer while all goes well
        (its error policy may wait, as a dead letter or a retry does).

        The runner chains consecutive such stages into one task: each batch goes through all of
        them at once, while its events are still in the CPU caches, with no queue between them.
        Default False: a stage that waits keeps its own task, so its neighbours work meanwhile.
        """
        return False

    #: Whether the stage's `partition_listener` needs a partitioned input (a config error without
    #: one). False: the stage keeps its state per input partition when the input is partitioned,
    #: and in memory otherwise (window, dedupe); its listener is registered only in the first case.
    needs_partitioned_input: ClassVar[bool] = True

    #: Partitioned input topics a stage with a partition listener reads: one for keyed state, two
    #: for a stream–stream join (co-partitioned).
    input_topics: int = 1

    def partition_listener(self) -> PartitionListener | None:
        """The listener of a stage that keeps state per input partition (None: it keeps none).

        Such a stage needs a partitioned input (see `needs_partitioned_input`); the
        runner registers the listener with the source before the source opens."""
        return None

    def side_outputs(self) -> list[str]:
        """Names of the sinks this stage writes to itself (a window's late events), through
        `StageContext.outputs`. Such a sink gets nothing else: the router leaves it out."""
        return []

    def state_restores(self) -> list[StateRestore]:
        """The restore of each state store this stage holds, running or done (for the restore
        metrics). Default: none, a stage without keyed state."""
        return []

    @abstractmethod
    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        """Transform one batch; see the class docstring for what to return."""

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


class Sink(Component[C]):
    """Async consumer of batches.

    `write` returns once the batch is durably written; the engine then acks
    it. A sink that acknowledges later (interval flush, pipelined producer)
    sets ``acks_itself = True`` and calls `Batch.ack` itself, and `flush`
    must make everything written durable and acked.

    ``events_out`` counts durably written events. The engine counts a batch
    when `write` returns, unless the sink sets ``counts_delivered = True`` and
    calls `StageContext.delivered` itself when it acks (then events it
    refuses and dead-letters count as ``dead_lettered`` only).
    """

    kind = "sink"
    acks_itself: ClassVar[bool] = False
    counts_delivered: ClassVar[bool] = False

    @abstractmethod
    async def write(self, batch: Batch) -> None:
        """Write ``batch``; return once it is durable (or, with ``acks_itself``, accepted)."""

    async def flush(self) -> None:
        """Make everything written so far durable (and acked, if `acks_itself`)."""

    def exactly_once_problem(self) -> str | None:
        """Why this sink cannot take part in ``delivery: exactly_once`` (None: it can)."""
        return "only Kafka sinks can write in a Kafka transaction"
