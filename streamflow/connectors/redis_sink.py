"""redis sink: write each batch as one pipeline of SET, HSET, XADD or LPUSH, with an optional TTL.

Every event is one command on the key its ``key`` template makes
(``user:{user_id}``): ``set`` stores the encoded event (``codec``), ``lpush``
pushes it onto a list, ``hset`` writes the event's fields into a hash and
``xadd`` appends them to a stream as one entry (or, with ``payload_field``,
the encoded event as one field) — field values are strings as they are,
anything else JSON. With ``ttl`` the key expires that many seconds after the
write (``SET … PX``; the others are followed by ``PEXPIRE``). The batch's
commands go in one round trip, and the batch is acknowledged only once Redis
answered them all (contract 2). A lost connection, a timeout or a server
that is loading is retried with the pipeline's ``sink_retry`` backoff,
holding the source back (``lpush`` and ``xadd`` may then write an event
twice: at-least-once). A command Redis refuses (a key of another type) sends
its event to ``on_error``; an event without a key field too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import Field, model_validator

from ..codecs import CodecName, get_codec
from ..core.batch import Batch
from ..core.errors import ErrorHandler, ErrorPolicy, PipelineFailed
from ..core.message import Message
from ..core.registry import SINKS
from ..core.stage import ComponentConfig, Sink, StageContext
from .redis import RedisConnection, connect, disconnect, is_transient
from .redis_keys import KeyTemplate

Command = Literal["set", "hset", "xadd", "lpush"]
#: One event's command(s): the Redis command with its arguments, and PEXPIRE after it when needed.
Commands = list[tuple[Any, ...]]


class RedisSinkConfig(ComponentConfig, RedisConnection):
    command: Command = Field("set", description="set: the encoded event as a string; hset: its fields into a "
                                                "hash; xadd: its fields as a stream entry; lpush: the encoded "
                                                "event onto a list")
    key: str = Field(description="key template: `user:{user_id}` puts a field's value (dotted path) into the "
                                 "key; without fields, one fixed key (a list, a stream)")
    ttl: float | None = Field(None, gt=0, description="seconds until the key expires, set on every write "
                                                      "(null: never)")
    codec: CodecName = Field("json", description="how set, lpush and xadd's `payload_field` encode the event")
    fields: list[str] | None = Field(None, description="hset, xadd: the event fields written (default: all)")
    payload_field: str | None = Field(None, description="xadd: write the encoded event (`codec`) as this one "
                                                        "field instead of one field per event field")
    maxlen: int | None = Field(None, ge=1, description="xadd: trim the stream to about this many entries "
                                                       "(MAXLEN ~)")
    on_error: ErrorPolicy = Field(default_factory=ErrorPolicy,
                                  description="what to do with an event Redis refuses or that has no key field")

    @model_validator(mode="after")
    def _check(self) -> RedisSinkConfig:
        KeyTemplate(self.key)  # rejects malformed templates
        if self.fields is not None and self.command not in ("hset", "xadd"):
            raise ValueError("`fields` applies to command: hset and xadd")
        if self.fields is not None and self.payload_field is not None:
            raise ValueError("give `fields` or `payload_field`, not both")
        if self.command != "xadd" and (self.payload_field is not None or self.maxlen is not None):
            raise ValueError("`payload_field` and `maxlen` apply to command: xadd")
        return self


def field_value(value: Any) -> str | bytes:
    """A hash or stream field's value: strings and bytes as they are, anything else as JSON."""
    if isinstance(value, (str, bytes)):
        return value
    return orjson.dumps(value)


@SINKS.register("redis")
class RedisSink(Sink[RedisSinkConfig]):
    """Writes each event as a Redis command, a batch per pipelined round trip."""

    def setup(self) -> None:
        cfg = self.config
        self.codec = get_codec(cfg.codec)
        self.key = KeyTemplate(cfg.key)
        self._client: Any = None
        self.errors = ErrorHandler(self.name, cfg.on_error)
        self._ttl_ms = None if cfg.ttl is None else max(1, round(cfg.ttl * 1000))
        #: Pipelines Redis answered (what the tests look at).
        self.round_trips = 0

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.config.on_error)
        self._client = await connect(self.config)

    async def close(self) -> None:
        client, self._client = self._client, None
        await disconnect(client)

    def commands(self, value: Any) -> Commands:
        """The command(s) writing one event value (raises for an event that cannot be written)."""
        cfg, key, ttl = self.config, self.key.render(value), self._ttl_ms
        if cfg.command == "set":
            return [("SET", key, self.codec.encode(value), *(() if ttl is None else ("PX", ttl)))]
        if cfg.command == "lpush":
            first: tuple[Any, ...] = ("LPUSH", key, self.codec.encode(value))
        else:
            pairs = self._pairs(value)
            if cfg.command == "hset":
                first = ("HSET", key, *pairs)
            else:
                trim = () if cfg.maxlen is None else ("MAXLEN", "~", cfg.maxlen)
                first = ("XADD", key, *trim, "*", *pairs)
        return [first] if ttl is None else [first, ("PEXPIRE", key, ttl)]

    def _pairs(self, value: Any) -> list[Any]:
        """hset and xadd: field, value, field, value … of one event."""
        cfg = self.config
        if cfg.payload_field is not None:
            return [cfg.payload_field, self.codec.encode(value)]
        if not isinstance(value, Mapping):
            raise TypeError(f"command {cfg.command} writes a mapping's fields, got {type(value).__name__}")
        names = cfg.fields if cfg.fields is not None else list(value)
        pairs = [x for name in names if name in value for x in (name, field_value(value[name]))]
        if not pairs:
            raise ValueError(f"command {cfg.command}: the event has none of the fields to write")
        return pairs

    async def write(self, batch: Batch) -> None:
        planned: list[tuple[Message, Commands]] = []
        failed: list[tuple[Message, Exception]] = []
        for m in batch.messages:
            try:
                planned.append((m, self.commands(m.value)))
            except (TypeError, ValueError, KeyError) as exc:
                failed.append((m, exc))
        if planned:
            try:
                failed += await self._send(planned)
            except Exception as exc:  # noqa: BLE001 - redis-py raises many types; classified here
                if not is_transient(exc):
                    raise PipelineFailed(f"redis sink {self.name!r}: writing failed: {type(exc).__name__}: "
                                         f"{exc}") from exc
                raise  # the runner writes the batch again on `sink_retry`, holding the source back
        for m, error in failed:  # after Redis answered: the others are written whatever the policy does
            await self.errors.handle(m, error, None, batch)

    async def _send(self, planned: list[tuple[Message, Commands]]) -> list[tuple[Message, Exception]]:
        """One pipeline of the batch's commands; a transient refusal raises (the batch is sent again)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for _, commands in planned:
                for command in commands:
                    pipe.execute_command(*command)
            answers = iter(await pipe.execute(raise_on_error=False))
        self.round_trips += 1
        refused: list[tuple[Message, Exception]] = []
        for m, commands in planned:
            errors = [a for a in (next(answers) for _ in commands) if isinstance(a, Exception)]
            transient = [e for e in errors if is_transient(e)]
            if transient:
                raise transient[0]
            if errors:
                refused.append((m, errors[0]))
        return refused
