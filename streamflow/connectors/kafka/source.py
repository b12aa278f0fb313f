"""Kafka source: a consumer-group member that emits one batch per topic-partition fetch.

Offsets are never auto-committed. Each emitted batch carries one ack for its
partition (resume position = last offset + 1); the runner's periodic commit
writes the ack watermark, so an offset is committed only once everything
derived from the messages before it is acknowledged (contract 2). On a
rebalance the revoked partitions are drained and committed before they are
given up (contract 4). Per-partition order is kept: batches of one partition
leave in fetch order.

Under ``settings.delivery: exactly_once`` the offsets go into the run's Kafka
transaction (`transactions`) instead: every commit interval the source stops
emitting (its *barrier*), waits until every batch it emitted is acknowledged —
written by the sinks, the dead-letter sink and the state changelogs, all inside
the transaction — then sends the watermarks to the transaction and commits it.
On assignment it fences the partitions' transactional ids before it reads their
committed offsets; on revocation it commits (or, not drained, aborts) first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from ...core.batch import Batch
from ...core.errors import ErrorHandler, PipelineFailed
from ...core.partitions import PartitionListener
from ...core.registry import SOURCES
from ...core.stage import Source, StageContext
from ._aiokafka import Consumer, ConsumerRecord, Producer, TopicPartition, heartbeat_in_callback, lean_fetches
from .clients import start_client
from .decoding import RecordDecoder
from .logs import quiet_repeats
from .source_config import KafkaSourceConfig
from .transactions import Transactions, exactly_once, release, transactions_of

__all__ = ["KafkaSource", "KafkaSourceConfig"]

log = logging.getLogger("streamflow.kafka.source")


@SOURCES.register("kafka")
class KafkaSource(Source[KafkaSourceConfig]):
    """Consumes Kafka topics as a member of a consumer group.

    Messages carry ``topic``, ``partition``, ``offset``, ``key`` (str when
    UTF-8), ``headers`` (list of (str, bytes)), ``timestamp`` (seconds) and
    ``raw`` (the value bytes); ``value`` is decoded with ``codec``. A value
    that fails to decode goes to ``on_error`` with its position.
    """


    def setup(self) -> None:
        self._decoder = RecordDecoder(self.config.codec)
        self._consumer: Consumer | None = None
        self._fetched: deque[tuple[TopicPartition, list[ConsumerRecord]]] = deque()  # polled, not yet emitted
        self._next: dict[TopicPartition, int] = {}  # next offset per partition (for lag)
        self._joined = False
        self.errors = ErrorHandler(self.name, self.config.on_error)
        self._listeners: list[PartitionListener] = []
        #: Assigned partitions whose listeners are done: only their records are emitted.
        self._readable: set[TopicPartition] = set()
        #: Under exactly-once: the run's transactions, the barrier (clear: emit nothing), the commit running.
        self._txn: Transactions | None = None
        self._gate = asyncio.Event()
        self._gate.set()
        self._committing: asyncio.Task[None] | None = None
        self._commit_lock = asyncio.Lock()  # a periodic commit and a revocation's never interleave

    # -- lifecycle ------------------------------------------------------------
    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        c = self.config
        self.errors = ctx.error_handler(c.on_error)
        quiet_repeats()
        options = c.consumer_options(f"streamflow-{ctx.pipeline}-{self.name}")
        if self._listeners and len(c.topics or ()) > 1:  # a join: partition p of every topic to one member
            options["partition_assignment_strategy"] = (RangePartitionAssignor,)
        if exactly_once(ctx):
            self._txn = transactions_of(ctx)
            options["isolation_level"] = "read_committed"  # never process what an aborted transaction wrote
        consumer: Consumer = await start_client(lambda: AIOKafkaConsumer(**options),
                                                f"kafka source {self.name}", c.connect_timeout, log,
                                                c.bootstrap_servers)
        lean_fetches(consumer)  # records as fetched, no ConsumerRecord each
        self._consumer = consumer
        listener = _RebalanceListener(self)
        if c.pattern:
            consumer.subscribe(pattern=c.pattern, listener=listener)
        else:
            consumer.subscribe(topics=list(c.topics or ()), listener=listener)
        log.info("kafka source %s: consuming %s as group %s from %s", self.name,
                 c.pattern or ",".join(c.topics or ()), c.group_id, c.bootstrap_servers)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._joined = False
        if consumer is not None:
            await consumer.stop()  # leaves the group; commits were made by the runner before
        txn, self._txn = self._txn, None
        if txn is not None:
            await txn.end()
            release(txn)

    @property
    def ready(self) -> bool:
        """Started and joined the group once (it may own no partition: more members than partitions)."""
        return self._consumer is not None and self._joined

    # -- partitioned input (keyed state) ----------------------------------------------
    def partitioned_input_problem(self, topics: int = 1) -> str | None:
        if self.config.pattern or len(self.config.topics or ()) != topics:
            if topics == 1:
                return "it consumes several topics (or a pattern); keyed state needs exactly one input topic"
            return f"it consumes {len(self.config.topics or ())} topics (or a pattern); the stage joins {topics}"
        return None

    def add_partition_listener(self, listener: PartitionListener) -> None:
        self._listeners.append(listener)

    def exactly_once_problem(self) -> str | None:
        return None

    def scale_out_problem(self) -> str | None:
        return None  # the members of one consumer group share the partitions

    def as_worker(self, index: int) -> None:
        """One static member id per worker process: ``group_instance_id`` + ``-<index>``."""
        if self.config.group_instance_id:
            self.config = self.config.model_copy(
                update={"group_instance_id": f"{self.config.group_instance_id}-{index}"})

    @property
    def transactional_producer(self) -> Callable[[], Producer] | None:
        """Under exactly-once, what the state changelog sends with (the open transaction's producer)."""
        return self._txn.current if self._txn is not None else None

    # -- reading -------------------------------------------------------------
    async def read(self) -> Batch:
        """The next partition's batch; waits (polling) until there is one. Never ends."""
        fetched = self._fetched
        while True:
            await self._gate.wait()  # closed while an exactly-once commit runs: emit nothing meanwhile
            if fetched:
                break  # nothing awaits from here until the batch is tracked
            consumer = self._consumer
            assert consumer is not None, "read() before open()"
            # everything fetched so far (a lean consumer's position moves per record batch), in batches
            data = await consumer.getmany(timeout_ms=self.config.poll_timeout_ms)
            size = self.config.batch_size
            for tp, records in data.items():
                if not records:
                    continue
                if (self._listeners or self._txn is not None) and tp not in self._readable:
                    consumer.seek(tp, records[0].offset)  # fetched while its listeners run: read it again later
                    continue
                if len(records) <= size:
                    fetched.append((tp, records))
                else:
                    fetched.extend((tp, records[i:i + size]) for i in range(0, len(records), size))
        tp, records = fetched.popleft()
        msgs, decoded, nbytes = self._decoder.messages(tp.topic, tp.partition, records)
        end = records[-1].offset + 1
        self._next[tp] = end
        batch = Batch(msgs, [self.tracker.track(tp, end)], nbytes=nbytes)
        if not decoded:  # one bad payload: decode each event on its own, the bad ones to on_error
            batch.messages, failed = self._decoder.decode_each(msgs)
            for m, exc in failed:
                await self.errors.handle(m, exc, None, batch)  # skipped, dead-lettered, or raises
        return batch

    # -- offsets -----------------------------------------------------------------
    async def commit(self) -> None:
        if self._txn is None:
            await super().commit()
        else:
            await self._commit_transaction(final=False)

    async def commit_final(self) -> None:
        """Under exactly-once: commit if the run drained, else abort (an aborted run commits nothing)."""
        if self._txn is None:
            await super().commit_final()
        else:
            await self._commit_transaction(final=True)

    async def _commit_transaction(self, final: bool) -> None:
        """The barrier: emit nothing, wait until every emitted batch is acknowledged, commit the transaction.

        A pipeline that does not drain within ``shutdown_timeout`` (a stage that holds
        events across commits, a sink that cannot deliver) fails: its transaction is
        aborted, and a restart resumes from the last committed one."""
        assert self._txn is not None
        async with self._commit_lock:
            if self._committing is not None:  # a commit whose caller was cancelled: let it finish
                await asyncio.shield(self._committing)
            if self._txn.active:
                await self._barrier_commit(final)

    async def _barrier_commit(self, final: bool) -> None:
        assert self._txn is not None and self.ctx is not None and self.ctx.settings is not None
        self._gate.clear()
        try:
            timeout = 0.0 if final else self.ctx.settings.shutdown_timeout
            if not await self.tracker.wait_drained(timeout=timeout):
                if final:  # the run was aborted mid-stream: nothing of this transaction is committed
                    await self._txn.end()
                    return
                raise PipelineFailed(f"kafka source {self.name}: exactly_once: the pipeline did not drain "
                                     f"within shutdown_timeout ({timeout:g}s) to commit its transaction; "
                                     f"{self.tracker.pending()} batches unacknowledged (a stage holding events "
                                     "across commits, such as open windows, cannot run exactly-once)")
            await self._commit_drained()
        except Exception as exc:
            self.ctx.stats.commit_errors += 1
            await self._txn.fail(exc)
            self.ctx.fail(exc)
            raise
        finally:
            if self._txn.active:
                self._gate.set()

    async def _commit_drained(self) -> None:
        """Commit the transaction with the watermarks that moved (none moved: nothing was sent either)."""
        assert self._txn is not None and self.ctx is not None
        positions = self.tracker.take_committable()
        if not positions:
            return
        offsets = {tp: OffsetAndMetadata(pos, "") for tp, pos in positions.items()}
        self._committing = asyncio.ensure_future(self._txn.commit(offsets, self.config.group_id or ""))
        try:
            await asyncio.shield(self._committing)
        finally:
            if self._committing.done():
                self._committing = None
        self.ctx.stats.commits += 1

    async def checkpoint(self, positions: dict[TopicPartition, int]) -> None:
        """Commit the acknowledged offsets of the partitions this member still owns."""
        consumer = self._consumer
        if consumer is None:
            return
        owned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(pos, "") for tp, pos in positions.items() if tp in owned}
        if offsets:
            await consumer.commit(offsets)

    async def caught_up(self) -> bool:
        """Joined, everything polled emitted, and every assigned partition read to its end (a tap's stop)."""
        consumer = self._consumer
        if consumer is None or not self._joined or self._fetched:
            return False
        assigned = list(consumer.assignment())
        ends = await consumer.end_offsets(assigned) if assigned else {}
        for tp in assigned:
            if await consumer.position(tp) < ends[tp]:
                return False
        return True

    def lag(self) -> dict[TopicPartition, int]:
        """Messages behind the partition end (highwater - next offset to emit), per partition."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            high, pos = consumer.highwater(tp), self._next.get(tp)
            if high is not None and pos is not None:
                out[tp] = max(0, high - pos)
        return out

    # -- rebalance -----------------------------------------------------------------
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Drain, commit and forget partitions this member gives up."""
        # polled but never emitted: the next owner reads them from the committed offset
        keep = [item for item in self._fetched if item[0] not in revoked]
        self._fetched.clear()  # in place: a read() in progress holds this deque
        self._fetched.extend(keep)
        if not revoked:
            return
        if self._txn is not None:
            await self._revoke_in_transaction(revoked)
        else:
            await self._drain_and_commit(revoked)
        self.tracker.forget(revoked)
        for tp in revoked:
            self._next.pop(tp, None)
        self._readable -= revoked
        await self._tell_listeners(revoked, assigned=False)

    async def _revoke_in_transaction(self, revoked: set[TopicPartition]) -> None:
        """Exactly-once: commit the transaction (everything drained) and give up its transactional id."""
        assert self._txn is not None
        async with self._commit_lock:
            await self._end_transaction()

    async def _end_transaction(self) -> None:
        """Drain (up to ``revoke_timeout``), commit what moved, and stop the producer (its id goes with the
        partitions); not drained: abort and fail the pipeline."""
        assert self._txn is not None and self.ctx is not None
        self._gate.clear()  # until the next assignment
        if not self._txn.active:
            return
        if not await self.tracker.wait_drained(timeout=self.config.revoke_timeout):
            error = PipelineFailed(f"kafka source {self.name}: exactly_once: in-flight batches not drained within "
                                   f"revoke_timeout ({self.config.revoke_timeout:g}s); the transaction is aborted")
            await self._txn.fail(error)
            self.ctx.fail(error)
            return
        try:
            await self._commit_drained()
        except Exception as exc:  # noqa: BLE001 - aiokafka only logs what a rebalance callback raises
            self.ctx.stats.commit_errors += 1
            self.ctx.fail(exc)
            return
        log.info("kafka source %s: committed the transaction of revoked partitions", self.name)
        await self._txn.end()

    async def _drain_and_commit(self, revoked: set[TopicPartition]) -> None:
        """At-least-once: drain the revoked partitions (up to ``revoke_timeout``) and commit their watermarks."""
        pending = self.tracker.pending(revoked)
        if pending:
            log.info("kafka source %s: draining %d in-flight batches of revoked partitions",
                     self.name, pending)
            if not await self.tracker.wait_drained(revoked, self.config.revoke_timeout):
                log.warning("kafka source %s: revoked partitions not drained within %.1fs; their "
                            "unacknowledged events will be read again by the next owner",
                            self.name, self.config.revoke_timeout)
        offsets = {tp: OffsetAndMetadata(wm, "") for tp in revoked
                   if (wm := self.tracker.watermark(tp)) is not None}
        consumer = self._consumer
        if offsets and consumer is not None:
            try:
                await consumer.commit(offsets)
                if self.ctx is not None:
                    self.ctx.stats.commits += 1
                log.info("kafka source %s: committed revoked partitions %s", self.name,
                         ", ".join(f"{tp.topic}[{tp.partition}]@{o.offset}" for tp, o in offsets.items()))
            except KafkaError as exc:
                if self.ctx is not None:
                    self.ctx.stats.commit_errors += 1
                log.warning("kafka source %s: commit of revoked partitions failed: %s", self.name, exc)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("kafka source %s: assigned %s", self.name,
                 ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)) or "no partitions")
        consumer = self._consumer
        new = assigned - self._readable
        if (self._listeners or self._txn is not None) and new and consumer is not None:
            consumer.pause(*new)  # no record of theirs is fetched until the listeners are done
            if not heartbeat_in_callback(consumer):  # a restore may outlast the session timeout
                log.warning("kafka source %s: no group heartbeat while partition listeners run (aiokafka "
                            "changed): a restore longer than session_timeout_ms loses its partitions", self.name)
            if self._txn is not None:
                await self._begin_transaction(consumer, assigned, new)
            await self._tell_listeners(new, assigned=True)
            self._readable |= new
            consumer.resume(*new)
        if self._txn is not None and self._txn.active:
            self._gate.set()
        self._joined = True

    async def _begin_transaction(self, consumer: Consumer, assigned: set[TopicPartition],
                                 new: set[TopicPartition]) -> None:
        """Exactly-once: fence the partitions' transactional ids, then resume each from its committed offset.

        Fencing first makes a zombie's open transaction end (committed or aborted)
        before the committed offsets are read, so they are the final ones."""
        assert self._txn is not None
        try:
            await self._txn.begin(self.config.group_id or "", assigned, self.config.connect_timeout)
            for tp in new:
                committed = await consumer.committed(tp)
                if committed is not None:
                    consumer.seek(tp, committed)
        except Exception as exc:
            log.error("kafka source %s: exactly_once: beginning the transaction failed: %s", self.name, exc)
            await self._txn.fail(exc)
            if self.ctx is not None:
                self.ctx.fail(exc)
            raise

    async def _tell_listeners(self, partitions: set[TopicPartition], *, assigned: bool) -> None:
        """Run the partition listeners (keyed state: restore, or let go); a failure fails the pipeline.

        aiokafka only logs what a rebalance callback raises, so the error goes to the
        runner through `StageContext.fail`."""
        by_topic: dict[str, set[int]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, set()).add(tp.partition)
        try:
            for topic, parts in by_topic.items():
                for listener in self._listeners:
                    if assigned:
                        total = len((self._consumer.partitions_for_topic(topic) if self._consumer else None)
                                    or parts)
                        await listener.assigned(self, topic, parts, total)
                    else:
                        await listener.revoked(topic, parts)
        except Exception as exc:
            log.error("kafka source %s: a partition listener failed: %s", self.name, exc)
            if self.ctx is not None:
                self.ctx.fail(exc)
            raise


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no type hints
    """Hands aiokafka's rebalance callbacks (run by its coordinator task) to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._source._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._source._on_assigned(set(assigned))
