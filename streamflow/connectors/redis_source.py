"""redis_stream source: Redis Streams read by a consumer group, each entry acknowledged (XACK) after the sinks.

The source reads as ``consumer`` of ``group`` (created at ``start_id`` if
missing) with ``XREADGROUP``. An entry stays in the group's pending entries
list until every event derived from it is acknowledged by the sinks it went
to (or dropped, or dead-lettered): the commit watermark of contract 2 is
turned into ``XACK`` of the batches below it, periodically and at shutdown.
A consumer that crashed (kill -9) left its entries pending: on start the
source first reads its own pending entries again (``XREADGROUP … 0``), then
new ones (``>``); with ``claim_idle`` it also takes over entries another
consumer has left pending that long (``XAUTOCLAIM``: a consumer that is gone
for good, such as a replaced container).

A lost connection or a timeout is retried on ``retry``; the pending list is
then read again (redis-py's own retries are off here: an XREADGROUP sent
again after its answer was lost delivers entries no one would see).

An entry's fields become the event (a mapping of strings), or with
``payload_field`` that one field decoded by ``codec``; one that does not
decode goes to ``on_error``. The entry id is the ``redis.id`` header and its
time the event's timestamp.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import time
from collections import deque
from typing import Any, Literal

from pydantic import Field, model_validator

from ..codecs import CodecName, get_codec
from ..core.backoff import Backoff
from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.registry import SOURCES
from ..core.stage import Source, SourceConfig, StageContext
from .redis import RedisConnection, connect, disconnect, is_transient, no_retry

log = logging.getLogger("streamflow.connectors.redis")

#: One stream entry as redis-py gives it: its id and its fields (None: deleted while pending).
Entry = tuple[bytes, dict[bytes, bytes] | None]


class RedisStreamSourceConfig(SourceConfig, RedisConnection):
    streams: list[str] = Field(min_length=1, description="stream keys read (each its own partition of acks)")
    group: str = Field(description="consumer group: consumers of one group share the entries")
    consumer: str = Field(default_factory=socket.gethostname,
                          description="this consumer's name in the group, stable across restarts so its "
                                      "pending entries are read again (default: the host name)")
    start_id: str = Field("$", pattern=r"^(\$|\d+(-\d+)?)$",
                          description="where a group created here starts: $ (new entries), 0 (the whole "
                                      "stream) or an entry id (`<ms>-<seq>`)")
    create_group: bool = Field(True, description="create the group (and the stream) if missing")
    batch_size: int = Field(1000, ge=1, description="entries per read (COUNT) at most")
    block: float = Field(1.0, gt=0, description="follow: seconds a read waits for new entries")
    mode: Literal["read", "follow"] = Field("follow", description="read: stop once nothing new is left; "
                                                                  "follow: keep waiting for entries")
    claim_idle: float | None = Field(None, gt=0, description="take over entries other consumers left pending "
                                                             "this many seconds (XAUTOCLAIM); longer than a "
                                                             "batch takes to reach the sinks")
    payload_field: str | None = Field(None, description="the field holding the encoded event (default: the "
                                                        "entry's fields are the event)")
    codec: CodecName = Field("json", description="how `payload_field` is decoded")
    key_field: str | None = Field(None, description="the field whose value is each event's key")
    retry: Backoff = Field(default_factory=Backoff, description="how reading again after a lost connection "
                                                                "or a timeout waits (default: until it works)")

    @model_validator(mode="after")
    def _check(self) -> RedisStreamSourceConfig:
        if self.block >= self.timeout:
            raise ValueError("`block` must be shorter than `timeout` (a blocked read is one command)")
        return self


def entry_time(entry_id: bytes) -> float:
    """The time (epoch seconds) in an entry id ``<ms>-<seq>``."""
    return int(entry_id.split(b"-", 1)[0]) / 1000


@SOURCES.register("redis_stream")
class RedisStreamSource(Source[RedisStreamSourceConfig]):
    """Entries of Redis streams through a consumer group; topic = stream, XACK once acknowledged."""

    def setup(self) -> None:
        cfg = self.config
        self.codec = get_codec(cfg.codec)
        self._client: Any = None
        self.errors = ErrorHandler(self.name, cfg.on_error)
        #: Streams whose own pending entries are still to be read again, and the id read up to.
        self._replay: dict[str, bytes] = {}
        #: Per stream, in read order: (batch number, entry ids) not yet XACKed.
        self._unacked: dict[str, deque[tuple[int, list[bytes]]]] = {s: deque() for s in cfg.streams}
        self._held: dict[str, set[bytes]] = {s: set() for s in cfg.streams}  # ids read and not XACKed
        self._batches = 0
        self._offset = 0
        self._claim_at = 0.0  # monotonic time of the next pass of XAUTOCLAIM
        self._claims: dict[str, Any] = {}  # the streams of a pass still to claim from, and where
        self._ready: deque[tuple[str, list[Entry]]] = deque()  # entries of other streams a read brought
        self._lag: dict[tuple[str, int], int] = {}
        #: Entries read again from this consumer's pending list, taken over from others, XACKed.
        self.replayed = self.claimed = self.acked = 0

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        cfg = self.config
        self.errors = ctx.error_handler(cfg.on_error)
        self._client = await connect(cfg, retry=no_retry())
        for stream in cfg.streams:
            if cfg.create_group:
                await self._create_group(stream)
            self._replay[stream] = b"0"

    async def _create_group(self, stream: str) -> None:
        exceptions = importlib.import_module("redis.exceptions")
        try:
            await self._client.xgroup_create(stream, self.config.group, id=self.config.start_id, mkstream=True)
            log.info("redis_stream %s: created group %s of %s at %s", self.name, self.config.group, stream,
                     self.config.start_id)
        except exceptions.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def close(self) -> None:
        client, self._client = self._client, None
        await disconnect(client)

    async def read(self) -> Batch | None:
        cfg = self.config
        failures = 0
        while True:
            try:
                stream, entries = await self._next()
            except Exception as exc:  # noqa: BLE001 - redis-py raises many types; classified here
                failures += 1
                if not is_transient(exc) or cfg.retry.exhausted(failures):
                    raise
                await self._wait_to_retry(exc, failures)
                # a read whose answer was lost delivered entries to no one: they are pending, read them
                self._replay = dict.fromkeys(cfg.streams, b"0")
                continue
            failures = 0
            if entries and stream is not None:
                return await self._batch(stream, entries)
            if stream is None and cfg.mode == "read":
                return None

    async def _next(self) -> tuple[str | None, list[Entry]]:
        """The next entries: those a read brought for another stream, this consumer's pending ones, a due
        XAUTOCLAIM, new ones (no stream: nothing new)."""
        cfg = self.config
        if self._ready:
            return self._ready.popleft()
        if self._replay:
            return await self._read_pending()
        if self._claims or (cfg.claim_idle is not None and time.monotonic() >= self._claim_at):
            return await self._claim()
        return await self._read_new()

    async def _wait_to_retry(self, error: BaseException, attempt: int) -> None:
        """Wait before reading again after a lost connection or timeout (`retry`), counted and logged."""
        if self.ctx is not None:
            self.ctx.stats.retries += 1
        delay = self.config.retry.delay(attempt)
        log.warning("redis_stream %s: reading failed (%s: %s); retry %d in %.2fs", self.name,
                    type(error).__name__, error, attempt, delay)
        await asyncio.sleep(delay)

    async def _read_pending(self) -> tuple[str | None, list[Entry]]:
        """This consumer's own pending entries (a crashed run's), after the id read up to."""
        stream, after = next(iter(self._replay.items()))
        answer = await self._client.xreadgroup(self.config.group, self.config.consumer, {stream: after},
                                               count=self.config.batch_size)
        entries: list[Entry] = answer[0][1] if answer else []
        if not entries:
            del self._replay[stream]
            return stream, []
        self._replay[stream] = entries[-1][0]
        held = self._held[stream]
        entries = [e for e in entries if e[0] not in held]  # not the ones this run is working on
        if entries:
            self.replayed += len(entries)
            log.info("redis_stream %s: %d pending entries of %s read again", self.name, len(entries), stream)
        return stream, entries

    async def _claim(self) -> tuple[str | None, list[Entry]]:
        """Entries other consumers left pending ``claim_idle`` seconds, now this consumer's (one XAUTOCLAIM)."""
        cfg = self.config
        assert cfg.claim_idle is not None
        if not self._claims:  # a new pass over every stream
            self._claims = dict.fromkeys(cfg.streams, b"0-0")
        stream, cursor = next(iter(self._claims.items()))
        cursor, entries, *_ = await self._client.xautoclaim(
            stream, cfg.group, cfg.consumer, min_idle_time=int(cfg.claim_idle * 1000), start_id=cursor,
            count=cfg.batch_size)
        if cursor in (b"0-0", "0-0"):
            del self._claims[stream]
            if not self._claims:
                self._claim_at = time.monotonic() + cfg.claim_idle / 2
        else:
            self._claims[stream] = cursor
        held = self._held[stream]
        mine = [e for e in entries if e[0] not in held]  # not the ones this run is still working on
        if mine:
            self.claimed += len(mine)
            log.info("redis_stream %s: took over %d entries of %s left pending", self.name, len(mine), stream)
        return stream, mine

    async def _read_new(self) -> tuple[str | None, list[Entry]]:
        """New entries of any stream (follow: waiting up to ``block`` seconds for them)."""
        cfg = self.config
        block = None if cfg.mode == "read" else int(cfg.block * 1000)
        answer = await self._client.xreadgroup(cfg.group, cfg.consumer, dict.fromkeys(cfg.streams, ">"),
                                               count=cfg.batch_size, block=block)
        if not answer:
            return None, []
        for name, entries in answer[1:]:  # one batch per stream: the others' come next
            self._ready.append((name.decode() if isinstance(name, bytes) else name, entries))
        name, entries = answer[0]
        return name.decode() if isinstance(name, bytes) else name, entries

    async def _batch(self, stream: str, entries: list[Entry]) -> Batch:
        """The events of ``entries``; deleted ones are XACKed at once, undecodable ones go to ``on_error``."""
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            log.warning("redis_stream %s: %d pending entries of %s were deleted before they were processed",
                        self.name, len(gone), stream)
            await self._client.xack(stream, self.config.group, *gone)
        ids = [entry_id for entry_id, fields in entries if fields]
        self._batches += 1
        self._unacked[stream].append((self._batches, ids))
        self._held[stream].update(ids)
        size = sum(len(k) + len(v) for _, fields in entries if fields for k, v in fields.items())
        batch = Batch([], [self.tracker.track(stream, self._batches)], nbytes=size)
        for entry_id, fields in entries:
            if fields:
                await self._add(batch, stream, entry_id, fields)
        return batch

    async def _add(self, batch: Batch, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        """One entry as an event of ``batch``, or to ``on_error`` when it does not decode."""
        cfg = self.config
        self._offset += 1
        raw = fields.get(cfg.payload_field.encode()) if cfg.payload_field is not None else None
        msg = Message(None, None, [("redis.id", entry_id)], entry_time(entry_id), stream, None, self._offset,
                      raw)
        try:
            if cfg.payload_field is None:
                msg.value = {k.decode(): v.decode() for k, v in fields.items()}
            elif raw is None:
                raise KeyError(f"the entry has no field {cfg.payload_field!r}")
            else:
                msg.value = self.codec.decode(raw)
            if cfg.key_field is not None:
                key = fields.get(cfg.key_field.encode())
                msg.key = None if key is None else key.decode()
        except Exception as exc:  # noqa: BLE001 - any decode failure goes to the policy
            msg.value = msg.raw = raw if raw is not None else b" ".join(k + b"=" + v for k, v in fields.items())
            await self.errors.handle(msg, exc, retry=None, batch=batch)
            return
        batch.messages.append(msg)

    async def commit(self) -> None:
        """XACK what was acknowledged, then measure the lag (every commit interval)."""
        await super().commit()
        await self._measure_lag()

    async def _measure_lag(self) -> None:
        """Each stream's entries not yet delivered to the group (XINFO GROUPS' ``lag``, Redis 7+)."""
        for stream in self.config.streams:
            for group in await self._client.xinfo_groups(stream):
                name = group["name"]
                if (name.decode() if isinstance(name, bytes) else name) == self.config.group:
                    lag = group.get("lag")
                    if lag is not None:  # None: Redis cannot tell (entries deleted in between)
                        self._lag[(stream, 0)] = int(lag)

    def lag(self) -> dict[Any, int]:
        """Entries of each stream (as ``(stream, 0)``) not yet read by the group, as of the last commit."""
        return dict(self._lag)

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        """XACK the entries of every batch up to each stream's watermark."""
        for stream, done in positions.items():
            unacked = self._unacked[stream]
            ids = [i for number, batch_ids in unacked if number <= done for i in batch_ids]
            for start in range(0, len(ids), 10_000):
                await self._client.xack(stream, self.config.group, *ids[start:start + 10_000])
            while unacked and unacked[0][0] <= done:  # XACKed: forgotten (a failed XACK is tried again)
                unacked.popleft()
            self._held[stream].difference_update(ids)
            self.acked += len(ids)
