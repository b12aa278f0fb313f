"""`Transactions`: the one transactional producer of an exactly-once pipeline, and its commits.

Under ``settings.delivery: exactly_once`` the Kafka sinks, the dead-letter sink
and the state changelogs of a process all send through one producer, and the
Kafka source commits its input offsets in that producer's transaction
(``send_offsets_to_transaction``) instead of committing them itself. The source
commits a transaction per commit interval at a point where the pipeline holds
no unacknowledged batch (its barrier, see `KafkaSource`), so a transaction
holds exactly the outputs, dead letters and state changes of the inputs whose
offsets it commits: a ``read_committed`` reader sees all of them or none.

**Fencing.** aiokafka sends the offsets with ``TxnOffsetCommit`` v0, which names
the group only: without the member id and generation of KIP-447 the broker
cannot refuse a commit from a member that lost its partitions without noticing
(a zombie: paused past its session timeout). So, as Kafka Streams did before
KIP-447, the transactional id is tied to the input partitions: a member's
producer is ``<group>.<topic>.<partition>`` for the lowest partition it owns,
and on every assignment the member first *fences* the id of each other
partition it got (it initializes a producer with that id, which ends the
previous holder's open transaction and bumps the id's epoch). Whatever id a
zombie held belongs to one of its old partitions, which someone now owns and
therefore fenced or took: its next send or commit fails (``ProducerFenced``)
and nothing it wrote becomes visible to a ``read_committed`` reader.

One `Transactions` serves one pipeline run: its stages find it by their
shared settings object (`transactions_of`), as they open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from ...core.errors import PipelineFailed
from ...core.settings import PipelineSettings
from ...core.stage import StageContext
from ._aiokafka import Producer, TopicPartition, TransactionalProducer
from .clients import start_client

log = logging.getLogger("streamflow.kafka.transactions")


class NoTransaction(RuntimeError):
    """Something was to be sent while this member holds no transaction (it owns no partition)."""


def transactional_id(group: str, tp: TopicPartition) -> str:
    """The transactional id of input partition ``tp`` in consumer group ``group``."""
    return f"{group}.{tp.topic}.{tp.partition}"


class Transactions:
    """The transactional producer of one pipeline run: begun per assignment, committed per interval."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self._options: dict[str, Any] | None = None
        self._producer: TransactionalProducer | None = None
        self._users = 0
        #: The transactional id in use (None while this member owns no partition).
        self.transactional_id: str | None = None
        #: Set once a transaction failed: nothing is committed after it.
        self.failed: BaseException | None = None

    def use_options(self, options: dict[str, Any]) -> None:
        """Producer options (connection, security, compression, …): the first Kafka sink's."""
        if self._options is None:
            self._options = {k: v for k, v in options.items() if k not in ("acks", "enable_idempotence")}

    @property
    def active(self) -> bool:
        """A transaction is open (this member owns partitions and nothing failed)."""
        return self._producer is not None and self.failed is None

    def current(self) -> Producer:
        """The producer to send with now, inside the open transaction."""
        if self._producer is None:
            raise NoTransaction("exactly_once: no open transaction (this member owns no partition)")
        return self._producer

    async def begin(self, group: str, partitions: Iterable[TopicPartition], connect_timeout: float) -> None:
        """Fence the ids of ``partitions``, take the lowest one's, and begin a transaction."""
        owned = sorted(partitions, key=lambda tp: (tp.topic, tp.partition))
        if not owned or self._producer is not None:
            return
        for tp in owned[1:]:
            fence = await self._start(transactional_id(group, tp), connect_timeout)
            await fence.stop()
        tid = transactional_id(group, owned[0])
        self._producer = await self._start(tid, connect_timeout)
        self.transactional_id = tid
        await self._producer.begin_transaction()
        log.info("exactly_once: transactional id %s (fenced %d more)", tid, len(owned) - 1)

    async def _start(self, tid: str, connect_timeout: float) -> TransactionalProducer:
        """A started producer with id ``tid`` (starting it fences every earlier holder of the id)."""
        options = self._options
        if options is None:
            raise RuntimeError("exactly_once: no Kafka sink gave its producer options")
        producer: TransactionalProducer = await start_client(
            lambda: AIOKafkaProducer(**options, transactional_id=tid), f"transactional producer {tid}",
            connect_timeout, log, str(options.get("bootstrap_servers")))
        return producer

    async def commit(self, offsets: dict[Any, Any], group: str) -> None:
        """Add ``offsets`` to the open transaction, commit it, and begin the next one."""
        producer = self._producer
        if producer is None or self.failed is not None:
            raise NoTransaction("exactly_once: no open transaction to commit")
        try:
            if offsets:
                await producer.send_offsets_to_transaction(offsets, group)
            await producer.commit_transaction()
        except BaseException as exc:
            await self.fail(exc)
            raise
        await producer.begin_transaction()

    async def fail(self, error: BaseException) -> None:
        """Abort the open transaction (if the broker still lets this producer) and commit nothing more."""
        if self.failed is None:
            self.failed = error
            log.error("exactly_once: transaction %s failed (%s: %s); it is aborted", self.transactional_id,
                      type(error).__name__, error)
        await self.end()

    async def end(self) -> None:
        """Abort what the open transaction holds (nothing, after a commit) and stop the producer."""
        producer, self._producer = self._producer, None
        self.transactional_id = None
        if producer is None:
            return
        try:
            await producer.abort_transaction()
        except Exception as exc:  # noqa: BLE001 - fenced or broken: the broker aborts it for us
            log.debug("exactly_once: abort: %s", exc)
        try:
            await producer.stop()
        except Exception as exc:  # noqa: BLE001
            log.debug("exactly_once: stopping the producer: %s", exc)

    def handle(self, what: str) -> SharedProducer:
        """What a Kafka sink sends with instead of its own producer."""
        return SharedProducer(self, what)


class SharedProducer:
    """A sink's view of the transactional producer, shaped like `RenewableProducer`.

    It cannot be renewed: a producer that broke mid-transaction loses the
    transaction, so the pipeline fails and a restart resumes from the last
    committed one."""

    def __init__(self, transactions: Transactions, what: str) -> None:
        self.transactions = transactions
        self.what = what

    @property
    def started(self) -> bool:
        return True

    @property
    def current(self) -> Producer:
        return self.transactions.current()

    async def start(self) -> None:
        """Nothing to start: the source begins the transaction on assignment."""

    async def renew(self, broken: Producer, error: BaseException) -> None:
        raise PipelineFailed(f"{self.what}: the transactional producer broke ({type(error).__name__}: {error}); "
                             "the transaction is aborted and a restart resumes from the last committed one")

    async def stop(self) -> None:
        release(self.transactions)


_RUNS: dict[int, Transactions] = {}


def transactions_of(ctx: StageContext) -> Transactions:
    """The `Transactions` of ``ctx``'s run, shared by its stages (they share one settings object).

    Each caller `release`\\ s it when it closes."""
    settings = ctx.settings
    if settings is None:
        raise RuntimeError("exactly_once needs the pipeline's settings in the stage context")
    txn = _RUNS.get(id(settings))
    if txn is None or txn.settings is not settings:
        txn = _RUNS[id(settings)] = Transactions(settings)
    txn._users += 1
    return txn


def release(txn: Transactions) -> None:
    """One user of ``txn`` closed; the last one forgets it."""
    txn._users -= 1
    if txn._users <= 0 and _RUNS.get(id(txn.settings)) is txn:
        del _RUNS[id(txn.settings)]


def exactly_once(ctx: StageContext) -> bool:
    """Whether the run of ``ctx`` has ``settings.delivery: exactly_once``."""
    return ctx.settings is not None and ctx.settings.delivery == "exactly_once"


#: What the state changelog sends with under exactly-once.
ProducerOf = Callable[[], Producer]
