"""join: a stream–table join — each event enriched with its key's row of a table built from a compacted topic.

The table (`streamflow.state.table`) is the latest value per key of a Kafka
topic (``table.topic``), held in a state store per input partition and
restored from the topic on assignment, before the partition's first event.

**Which table value an event sees.** An event is joined with the row its key
had at the event's time: before an event is joined, the table is read ahead,
in offset order, through every record stamped at or before the event's time
(the Kafka timestamp, or ``event_time``) that was written before the event's
batch was taken. So an update stamped before the event is always seen, and one
stamped after it is not (it waits until an event reaches its time). The one
exception is the restore on assignment: it brings the table up to its end, so
events read after a restart or a rebalance from before that moment (a backlog)
see the table as restored.

On a miss (no row, or a tombstone): ``on_missing: drop`` drops the event,
counted as filtered (an inner join); ``keep`` passes it on (a left join; with
``into`` that field is null); ``error`` sends it to ``on_error`` (for example
``dead_letter``). The stream and the table must be co-partitioned: the same
partition count (checked on assignment: an error names both topics) and each
event's key in the partition Kafka's default partitioner gives it (checked
per event unless ``check_keys: false``; a wrong one goes to ``on_error``).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from aiokafka.partitioner import murmur2
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..codecs import CodecName, get_codec
from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.partitions import PartitionListener, StateRestore
from ..core.refs import FunctionRef
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig, Source, StageContext, Transform
from ..state.event_time import EventTime
from ..state.table import NotCoPartitioned, Table, check_copartitioned
from .base import is_async_callable
from .fields import path_getter


class TableConfig(BaseModel):
    """The table side: a compacted topic on the source's cluster."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(description="compacted topic of the table: key = row key, value = row (null deletes it)")
    codec: CodecName = Field("json", description="how the table's values are decoded")


class JoinConfig(EventTransformConfig):
    table: TableConfig = Field(description="the table: `{topic: customers, codec: json}`; read with the "
                                           "Kafka source's connection")
    key: str | None = Field(None, description="event field (dotted path) holding the row key (default: the "
                                              "event's Kafka key)")
    key_fn: FunctionRef | None = Field(None, description="`module:function` giving the row key from the "
                                                         "event's value (instead of `key`)")
    into: str | None = Field(None, description="field that gets the row (default: the row's fields are "
                                               "merged into the event, the row's winning)")
    on_missing: Literal["drop", "keep", "error"] = Field(
        "drop", description="an event without a row: drop it (counted as filtered: an inner join), keep it "
                            "(a left join; `into` is null) or send it to `on_error`")
    event_time: EventTime | None = Field(None, description=(
        "the event's time, which the table is read ahead to: `{field: …}`, `{fn: …}`, "
        "`{timestamp: true}` (default: the Kafka record time)"))
    check_keys: bool = Field(True, description="check that each event's key belongs in its partition (Kafka's "
                                               "default partitioner); a wrong one goes to `on_error`")
    state_backend: Literal["memory", "disk"] = Field(
        "memory", description="where the table lives: `memory`, or `disk` (RocksDB) for tables larger "
                              "than memory; either is restored from the topic on start")
    state_dir: Path | None = Field(None, description="directory of the `disk` table (default: a temporary one)")

    @model_validator(mode="after")
    def _check(self) -> JoinConfig:
        if self.key is not None and self.key_fn is not None:
            raise ValueError("join takes `key` or `key_fn`, not both")
        if self.key is not None:
            path_getter(self.key)  # rejects malformed paths
        if self.key_fn is not None and is_async_callable(self.key_fn):
            raise ValueError("join `key_fn` must be a plain (sync) function")
        return self


class MissingRow(LookupError):
    """No row in the table for an event's key (``on_missing: error``)."""


def row_key(key: Any) -> bytes:
    """The table key of a join key: bytes as they are, text UTF-8, numbers as their decimal text."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return str(key).encode()
    raise ValueError(f"join key must be text, bytes or a number, got {type(key).__name__} {key!r}"
                     if key is not None else "event has no join key")


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key`` among ``partitions``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@TRANSFORMS.register("join")
class Join(Transform[JoinConfig]):
    """Enrich each event with its key's row of a table read from a compacted Kafka topic.

    The table is partitioned like the (Kafka) source, restored from its topic
    when partitions are assigned, and read ahead to each event's time: an
    event sees the row its key had at its time. A miss is dropped, kept or
    sent to ``on_error`` (``on_missing``).
    """

    def setup(self) -> None:
        cfg = self.config
        self._key: Callable[[Message], Any] = _key_getter(cfg)
        self._time = cfg.event_time.extractor() if cfg.event_time is not None else _record_time
        self._codec = get_codec(cfg.table.codec)
        self.errors = ErrorHandler(self.name, cfg.on_error)
        self.table: Table | None = None
        self._topic = ""  # the stream topic
        self._partitions = 0  # partitions of both topics, once checked
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None

    def serial_reason(self) -> str | None:
        return "the table is read ahead to each event's time, one event after the other"

    def partition_listener(self) -> PartitionListener | None:
        return self

    def state_restores(self) -> list[StateRestore]:
        return list(self.table.restores) if self.table is not None else []

    @property
    def ready(self) -> bool:
        """False while the table is being restored."""
        return self.table is None or self.table.ready

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)

    async def close(self) -> None:
        if self.table is not None:
            await self.table.stop()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    # -- the partition listener ---------------------------------------------------------
    async def assigned(self, source: object, topic: str, partitions: Collection[int], total: int) -> None:
        """Check co-partitioning (first time), then restore the table's ``partitions``."""
        table = self.table or await self._start_table(source)
        if not self._partitions:
            check_copartitioned(topic, total, table.topic, await table.partition_count())
            self._topic, self._partitions = topic, total
        await table.assign(partitions)

    async def revoked(self, topic: str, partitions: Collection[int]) -> None:
        if self.table is not None:
            self.table.revoke(partitions)

    async def _start_table(self, source: object) -> Table:
        from ..connectors.kafka.security import KafkaConnection

        connection = getattr(source, "config", None)
        if not isinstance(source, Source) or not isinstance(connection, KafkaConnection):
            raise TypeError(f"join {self.name!r}: source {source!r} has no Kafka connection for the table")
        directory = self.config.state_dir
        if directory is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="streamflow-table-")
            directory = Path(self._own_dir.name)
        pipeline = source.ctx.pipeline if source.ctx is not None else "pipeline"
        self.table = Table(connection, self.config.table.topic, backend=self.config.state_backend,
                           directory=directory / self.name, name=self.name,
                           client_id=f"streamflow-{pipeline}-{self.name}-table")
        await self.table.start()
        return self.table

    # -- events ---------------------------------------------------------------------------
    async def process(self, batch: Batch) -> Batch:
        table = self.table
        if table is None:
            raise RuntimeError(f"join {self.name!r}: no table; its input is not a Kafka source")
        msgs = [m for m in batch.messages if m.partition is not None and table.holds(m.partition)]
        # stragglers of a revoked partition are left out: its next owner reads them again
        ends = await table.end_offsets({m.partition for m in msgs if m.partition is not None})
        out: list[Message] = []
        failed = 0
        for m in msgs:
            try:
                joined = await self._join(m, ends)
            except Exception as exc:  # noqa: BLE001 - the error policy decides
                handled = await self.errors.handle(m, exc, functools.partial(self._join, m, ends), batch)
                if not handled.recovered:
                    failed += 1
                    continue
                joined = handled.value
            if joined is not None:
                out.append(joined)
        dropped = len(msgs) - failed - len(out)
        if self.ctx is not None and dropped:
            self.ctx.stats.filtered += dropped
        return batch.derive(out)

    async def _join(self, msg: Message, ends: dict[int, int]) -> Message | None:
        """``msg`` with its row (None: dropped); the table is first read ahead to its time."""
        assert self.table is not None and msg.partition is not None
        key = row_key(self._key(msg))
        if self.config.check_keys and (home := key_partition(key, self._partitions)) != msg.partition:
            raise NotCoPartitioned(
                f"join key {key!r} belongs in partition {home} (Kafka's default partitioner), but the event "
                f"came from {self._topic}[{msg.partition}]: key the stream by the join key, as its table "
                f"{self.table.topic!r} is (or set check_keys: false for a partitioner of your own)")
        await self.table.read_ahead(msg.partition, round(self._time(msg) * 1000), ends[msg.partition])
        raw = self.table.get(msg.partition, key)
        row = None if raw is None else self._codec.decode(raw)
        if row is None:
            if self.config.on_missing == "drop":
                return None
            if self.config.on_missing == "error":
                raise MissingRow(f"no row for key {key.decode(errors='replace')!r} in table "
                                 f"{self.table.topic!r}")
        msg.value = self._merge(msg.value, row)
        return msg

    def _merge(self, value: Any, row: Any) -> Any:
        into = self.config.into
        if not isinstance(value, Mapping):
            raise TypeError(f"join needs mapping events, got {type(value).__name__}")
        if into is not None:
            return {**value, into: row}
        if row is None:
            return value
        if not isinstance(row, Mapping):
            raise TypeError(f"table {self.config.table.topic!r} row is a {type(row).__name__}, not a mapping: "
                            "set `into` to put it in a field")
        return {**value, **row}


def _key_getter(cfg: JoinConfig) -> Callable[[Message], Any]:
    """Where an event's join key comes from: a field, a function of the value, or the Kafka key."""
    if cfg.key is not None:
        get = path_getter(cfg.key)
        return lambda m: get(m.value)
    if cfg.key_fn is not None:
        fn = cfg.key_fn
        return lambda m: fn(m.value)
    return lambda m: m.key


def _record_time(msg: Message) -> float:
    if msg.timestamp is None:
        raise ValueError("event has no timestamp to read the table ahead to (set `event_time`)")
    return msg.timestamp
