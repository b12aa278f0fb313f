"""Error policies (contract 5): what a stage does with an event it cannot process."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from ..observability.logging import redact
from .backoff import Backoff
from .batch import Batch
from .configs import error_lines
from .log_throttle import LogThrottle
from .message import Message
from .stats import StageStats

log = logging.getLogger("streamflow.errors")

PolicyName = Literal["fail", "skip", "retry", "dead_letter"]


class ConfigError(Exception):
    """A pipeline definition is invalid; raised before any I/O (exit code 2)."""


class ComponentConfigError(ValidationError, ConfigError):
    """A component built in Python got a bad config: names the component and each field.

    Still a pydantic ``ValidationError`` (``errors()`` works as before) and a
    `ConfigError` (``streamflow run`` exits 2).
    """

    component: str = "component"

    @classmethod
    def of(cls, component: str, exc: ValidationError) -> ComponentConfigError:
        """The error of ``component`` (e.g. ``sink 'file'``) carrying ``exc``'s errors."""
        err = cls.from_exception_data(exc.title, exc.errors())  # type: ignore[arg-type]
        err.component = component
        return err

    def __str__(self) -> str:
        lines = error_lines(self)
        if len(lines) == 1:
            return f"{self.component}: {lines[0]}"
        return f"{self.component}: {len(lines)} config errors\n" + "\n".join(f"  {line}" for line in lines)


class PipelineFailed(Exception):
    """The pipeline stopped because a stage's `fail` policy fired or a stage crashed (exit 1).

    ``where`` holds structured log fields locating the failure (pipeline, stage,
    source position); the runner logs the failure once, with them.
    """

    def __init__(self, message: str, where: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.where = where or {}


class ErrorPolicy(Backoff):
    """What to do when an event fails in a stage.

    ``fail`` stops the pipeline (the event's position is not committed);
    ``skip`` drops it; ``retry`` tries again up to ``max_attempts`` times on
    the `Backoff` schedule, then applies ``then``; ``dead_letter``
    writes the original payload and the error to the pipeline's dead-letter
    sink. Every handled error is counted and logged with its source position.
    In YAML either a bare name (``on_error: skip``) or a mapping.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: PolicyName = "fail"
    max_attempts: int | None = Field(3, ge=1, description="total attempts for `retry`, the first "
                                                          "included (null: until it succeeds)")
    backoff: float = Field(0.1, ge=0, description="first retry delay in seconds")
    max_backoff: float = Field(10.0, ge=0, description="cap of the retry delay")
    then: Literal["fail", "skip", "dead_letter"] = Field(
        "fail", description="policy applied once `retry` runs out of attempts")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"policy": data}
        return data

    def uses_dead_letter(self) -> bool:
        return self.policy == "dead_letter" or (self.policy == "retry" and self.then == "dead_letter")


def dead_letter_message(msg: Message, error: BaseException, stage: str, attempts: int) -> Message:
    """The dead-letter record of ``msg``: original bytes, error, stage and source position.

    The record is both a mapping (for file/stdout sinks) and headers (for Kafka). Its
    ``payload_encoding`` says how ``payload`` holds the original: ``utf-8`` (the bytes were
    text), ``hex`` (they were not valid UTF-8) or ``value`` (no bytes: the event's value).
    """
    payload, encoding = _payload(msg)
    err = redact(f"{type(error).__name__}: {error}")  # no secret in a dead-letter record either
    record = {
        "error": err,
        "stage": stage,
        "attempts": attempts,
        "source": {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
        "payload": payload,
        "payload_encoding": encoding,
    }
    headers = list(msg.headers or ())
    headers += [
        ("streamflow.error", err.encode()),
        ("streamflow.stage", stage.encode()),
        ("streamflow.attempts", str(attempts).encode()),
        ("streamflow.payload.encoding", encoding.encode()),
    ]
    if msg.topic is not None:
        headers.append(("streamflow.source.topic", str(msg.topic).encode()))
    if msg.partition is not None:
        headers.append(("streamflow.source.partition", str(msg.partition).encode()))
    if msg.offset is not None:
        headers.append(("streamflow.source.offset", str(msg.offset).encode()))
    # an error may name what it concerns (a codec's schema id …): as fields and streamflow.<name> headers
    for name, value in (getattr(error, "dead_letter_fields", None) or {}).items():
        record[name] = value
        headers.append((f"streamflow.{name}", str(value).encode()))
    return Message(record, msg.key, headers, msg.timestamp, msg.topic, msg.partition, msg.offset,
                   msg.raw if msg.raw is not None else None)


def _payload(msg: Message) -> tuple[Any, str]:
    """The original payload of ``msg`` for a dead-letter record, and how it is encoded there."""
    raw = msg.raw if msg.raw is not None else msg.value if isinstance(msg.value, (bytes, str)) else None
    if raw is None:
        return msg.value, "value"
    if isinstance(raw, str):
        return raw, "utf-8"
    try:
        return raw.decode(), "utf-8"
    except UnicodeDecodeError:
        return raw.hex(), "hex"


@dataclass(frozen=True, slots=True)
class Handled:
    """How `ErrorHandler.handle` resolved a failure: a retry's result, or the event dropped."""

    action: Literal["retried", "skipped", "dead_lettered"]
    #: What the successful retry returned (``retried`` only).
    value: Any = None

    @property
    def recovered(self) -> bool:
        """True when a retry succeeded and ``value`` stands in for the failed call's result."""
        return self.action == "retried"


SKIPPED = Handled("skipped")
DEAD_LETTERED = Handled("dead_lettered")


class ErrorHandler:
    """Applies one stage's `ErrorPolicy` to failing events, counting and logging each."""

    def __init__(self, stage: str, policy: ErrorPolicy, stats: StageStats | None = None,
                 dead_letter: Callable[[Batch], Awaitable[None]] | None = None,
                 pipeline: str | None = None) -> None:
        self.stage = stage
        self.pipeline = pipeline
        self.policy = policy
        self.stats = stats
        self.dead_letter = dead_letter
        #: The per-event warnings: the first few per interval, then a count (`LogThrottle`).
        self._logs = LogThrottle(log, f"stage {stage}: ")

    async def handle(self, msg: Message, error: BaseException,
                     retry: Callable[[], Any] | None = None, batch: Batch | None = None) -> Handled:
        """Resolve a failure of ``msg`` (which came in ``batch``), or raise `PipelineFailed`.

        ``retry`` calls the failed operation again (sync or async); without it
        a ``retry`` policy goes straight to its ``then``. A dead-letter record
        holds the acks of ``batch`` until the dead-letter sink has written it.
        """
        policy = self.policy
        action, attempts = policy.policy, 1
        if action == "retry":
            if retry is not None:
                outcome = await self._retry(msg, error, retry)
                if isinstance(outcome, Handled):
                    return outcome
                error, attempts = outcome
            action = policy.then
        self._count("errors")
        if action == "skip":
            self._count("skipped")
            self._logs.warning("skipped", self._where(msg), "stage %s: skipped event at %s: %s", self.stage,
                               msg.position(), _describe(error))
            return SKIPPED
        if action == "dead_letter":
            await self._dead_letter(msg, error, attempts, batch)
            return DEAD_LETTERED
        raise PipelineFailed(f"stage {self.stage!r} failed on event at {msg.position()}: "
                             f"{_describe(error)}", self._where(msg)) from error

    async def _retry(self, msg: Message, error: BaseException,
                     retry: Callable[[], Any]) -> Handled | tuple[BaseException, int]:
        """Call ``retry`` on the policy's `Backoff` schedule: its result, or the last error and attempts."""
        policy, attempts = self.policy, 1
        while not policy.exhausted(attempts):
            self._count("retries")
            delay = policy.delay(attempts)
            self._logs.warning("retried", self._where(msg), "stage %s: %s at %s; retry %d/%s in %.2fs",
                               self.stage, _describe(error), msg.position(), attempts,
                               "∞" if policy.max_attempts is None else policy.max_attempts - 1, delay)
            await asyncio.sleep(delay)
            attempts += 1
            try:
                result = retry()
                if inspect.isawaitable(result):
                    result = await result
                return Handled("retried", result)
            except Exception as exc:  # noqa: BLE001 - user code may raise anything
                error = exc
        return error, attempts

    async def _dead_letter(self, msg: Message, error: BaseException, attempts: int,
                           batch: Batch | None) -> None:
        """Send ``msg``'s dead-letter record, holding ``batch``'s acks until it is written."""
        self._count("dead_lettered")
        self._logs.warning("dead-lettered", self._where(msg), "stage %s: dead-lettered event at %s: %s",
                           self.stage, msg.position(), _describe(error))
        if self.dead_letter is None:
            raise PipelineFailed(f"stage {self.stage!r} has on_error dead_letter but the "
                                 "pipeline has no dead_letter sink")
        record = dead_letter_message(msg, error, self.stage, attempts)
        acks = batch.acks if batch is not None else ()
        for a in acks:
            a.retain()
        await self.dead_letter(Batch([record], acks))

    def _where(self, msg: Message) -> dict[str, Any]:
        """Structured log fields locating the event (JSON logs show them as keys)."""
        return {"pipeline": self.pipeline, "stage": self.stage, "topic": msg.topic,
                "partition": msg.partition, "offset": msg.offset}

    def _count(self, what: str) -> None:
        if self.stats is not None:
            self.stats.count(what)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
