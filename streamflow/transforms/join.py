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
exception is the restore on assignment: it reads the table to its end, so
events read after a restart or a rebalance from before that moment (a
backlog) see the table as restored.

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
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..codecs import CodecName, get_codec
from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.partitions import PartitionListener, StateRestore
from ..core.registry import TRANSFORMS
from ..core.stage import StageContext, Transform
from ..state.copartition import KeyPartitions, check_copartitioned
from .join_keys import JoinKeyConfig, check_key, join_key, source_connection

if TYPE_CHECKING:  # the table reads Kafka; the Kafka connector imports the transforms, which import this
    from ..state.table import Table


class TableConfig(BaseModel):
    """The table side: a compacted topic on the source's cluster."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(description="compacted topic of the table: key = row key, value = row (null deletes it)")
    codec: CodecName = Field("json", description="how the table's values are decoded")


class JoinConfig(JoinKeyConfig):
    table: TableConfig = Field(description="the table: `{topic: customers, codec: json}`; read with the "
                                           "Kafka source's connection")
    into: str | None = Field(None, description="field that gets the row (default: the row's fields are "
                                               "merged into the event, the row's winning)")
    on_missing: Literal["drop", "keep", "error"] = Field(
        "drop", description="an event without a row: drop it (counted as filtered: an inner join), keep it "
                            "(a left join; `into` is null) or send it to `on_error`")


class MissingRow(LookupError):
    """No row in the table for an event's key (``on_missing: error``)."""


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
        self._key = cfg.key_getter()
        self._time = cfg.time_getter()
        self._codec = get_codec(cfg.table.codec)
        self.errors = ErrorHandler(self.name, cfg.on_error)
        self.table: Table | None = None
        self._home: KeyPartitions | None = None  # key -> partition, once the partition counts are checked
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
        if self._home is None:
            check_copartitioned(topic, total, table.topic, await table.partition_count())
            self._home = KeyPartitions(total)
        await table.assign(partitions)

    async def revoked(self, topic: str, partitions: Collection[int]) -> None:
        if self.table is not None:
            self.table.revoke(partitions)

    async def _start_table(self, source: object) -> Table:
        from ..state.table import Table

        connection, pipeline = source_connection(source, self.name)
        directory = self.config.state_dir
        if directory is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="streamflow-table-")
            directory = Path(self._own_dir.name)
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
        key = join_key(self._key(msg))
        if self.config.check_keys and self._home is not None:
            check_key(key, msg, self._home, self.table.topic)
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
