"""Kafka sink: an idempotent producer that acknowledges a batch once the brokers have it.

`write` appends every message of a batch to the producer's record batches
(that is all sending does) and hands the delivery futures to a task; up to
``max_in_flight`` batches are delivered at once, so consecutive batches
pipeline. A batch is acked only when every one of its messages is on the
brokers (``acks: all``). A delivery that fails after aiokafka's own retries
(a broker down for longer than the request timeout) is sent again on the
pipeline's ``settings.sink_retry`` schedule: nothing is dropped, nothing acked
early; ``max_attempts`` reached fails the pipeline. Only errors no retry can
fix (a message too large, an invalid topic, a denied authorization) go to the
sink's ``on_error`` policy.

Under ``settings.delivery: exactly_once`` it sends with the run's transactional
producer (`transactions`) instead of its own, and its acks tell the Kafka
source's commit barrier that the records are in the open transaction.

The parts: `sink_config` (keys, error classes), `records` (messages ->
records), `partitioning`, `batches` (records -> the producer's record
batches), `delivery` (awaiting, re-sending, acking), `clients` (the
producer's lifecycle), `_aiokafka` (what we rely on from aiokafka).
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from ...core.backoff import Backoff
from ...core.batch import Batch
from ...core.errors import ErrorHandler
from ...core.message import Message
from ...core.registry import SINKS
from ...core.stage import Sink, StageContext
from ._aiokafka import Producer
from .batches import RecordBatches
from .clients import RenewableProducer
from .delivery import Attempt, Deliveries
from .logs import quiet_repeats
from .partitioning import Partitioning
from .records import KEYED, KEYLESS, Record, RecordEncoder
from .sink_config import BROKEN_PRODUCER_ERRORS, PERMANENT_ERRORS, SIZE_ERRORS, KafkaSinkConfig
from .transactions import SharedProducer, exactly_once, transactions_of

__all__ = ["BROKEN_PRODUCER_ERRORS", "PERMANENT_ERRORS", "SIZE_ERRORS", "KafkaSink", "KafkaSinkConfig"]


@SINKS.register("kafka")
class KafkaSink(Sink[KafkaSinkConfig]):
    """Writes messages to Kafka with ``acks: all`` and idempotence, pipelining batches.

    The key is ``key_fn(message)``, the value at ``key_field``, or the
    message's own key; headers are the message's (``pass_headers``) plus the
    static ``headers``. As the dead-letter sink it writes each failed event's
    original bytes with the error, stage and source position as headers.
    """

    acks_itself = True
    counts_delivered = True  # `events_out` counts what the brokers acknowledged, not what was handed over

    def exactly_once_problem(self) -> str | None:
        return None

    def setup(self) -> None:
        c = self.config
        self.errors = ErrorHandler(self.name, c.on_error)
        self._partitioning = Partitioning()
        self._use_encoder(RecordEncoder(c, raw_out=c.dead_letter_format == "raw"))
        self._producer: RenewableProducer | SharedProducer = RenewableProducer(
            f"kafka sink {self.name}", self._new_producer, c.connect_timeout, c.request_timeout_ms / 1000 + 5,
            c.bootstrap_servers)
        self._deliveries = self._new_deliveries(Backoff())

    def _use_encoder(self, encoder: RecordEncoder) -> None:
        self._encoder = encoder
        self._batches = RecordBatches(encoder, self._partitioning, self.config.max_request_size)

    def _new_producer(self, idempotence: bool = True) -> Producer:
        """A producer (not started) as the config says; its partitioner is the one `Partitioning` uses.

        ``idempotence=False``: without idempotence whatever the config says (the broker refused it).
        """
        assert self.ctx is not None, "started by open()"
        options = self.config.producer_options(f"streamflow-{self.ctx.pipeline}-{self.name}")
        if not idempotence:
            options["enable_idempotence"] = False
        producer: Producer = AIOKafkaProducer(**options, partitioner=self._partitioning.partitioner)
        return producer

    def _new_deliveries(self, retry: Backoff) -> Deliveries:
        stats = self.ctx.stats if self.ctx is not None else None
        return Deliveries(self.name, self.config.max_in_flight, self._resend, self._producer.renew,
                          self.errors, retry, stats, self.ctx.fail if self.ctx is not None else None,
                          self.ctx.delivered if self.ctx is not None else None)

    # -- lifecycle ------------------------------------------------------------
    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        c = self.config
        self.errors = ctx.error_handler(c.on_error)
        quiet_repeats()
        if c.dead_letter_format == "auto":
            self._use_encoder(RecordEncoder(c, raw_out=ctx.stats.kind == "dead_letter"))
        if exactly_once(ctx):  # send in the run's transaction; the source commits it
            transactions = transactions_of(ctx)
            transactions.use_options({**self.config.producer_options(f"streamflow-{ctx.pipeline}-{self.name}"),
                                      "partitioner": self._partitioning.partitioner})
            self._producer = transactions.handle(f"kafka sink {self.name}")
        self._deliveries = self._new_deliveries(ctx.settings.sink_retry if ctx.settings else Backoff())
        await self._producer.start()

    async def close(self) -> None:
        await self._deliveries.cancel()
        await self._producer.stop()

    @property
    def ready(self) -> bool:
        """Connected and not currently re-sending failed deliveries."""
        d = self._deliveries
        return self._producer.started and not d.retrying and d.failure is None

    # -- writing -----------------------------------------------------------------
    async def write(self, batch: Batch) -> None:
        msgs = batch.messages
        if not msgs:
            batch.ack()
            return
        encoder = self._encoder
        shape = encoder.shape(msgs)
        if shape == KEYLESS:
            await self._deliveries.dispatch(batch, lambda: self._batches.send_keyless(self._producer.current, msgs))
            return
        if shape == KEYED:
            await self._deliveries.dispatch(batch, lambda: self._batches.send_keyed(self._producer.current, msgs))
            return
        rejected: list[tuple[Message, Exception]] = []
        try:
            records = encoder.records(msgs)
        except Exception:  # noqa: BLE001 - one bad message: the others are sent, it goes to on_error
            records, rejected = encoder.records_each(msgs)
        await self._deliveries.dispatch(batch, lambda: self._send(records, rejected))

    async def flush(self) -> None:
        """Wait until every batch written so far is on the brokers (and acked)."""
        await self._deliveries.flush()

    async def _send(self, records: list[Record], rejected: list[tuple[Message, Exception]]) -> Attempt:
        attempt = await self._batches.send(self._producer.current, records)
        attempt.rejected.extend(rejected)
        return attempt

    async def _resend(self, records: list[Record], alone: bool) -> Attempt:
        return await self._batches.send(self._producer.current, records, alone)
