"""`PipelineSettings`: the engine settings of one pipeline (channels, shutdown, commits, sink retry, ops server).

A module of its own so that stages (`StageContext.settings`) and the
pipeline graph can both name it without importing each other.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from ..security.tls import ServerTls
from .backoff import Backoff
from .configs import ConfigModel
from .tracing import missing_tracing_modules


class ChannelSettings(ConfigModel):
    """Capacity of every channel between two stages (contract 1)."""

    model_config = ConfigDict(extra="forbid")

    # One: the stages share one event loop, so a deeper channel buys no parallelism, only events kept waiting
    # out of the CPU caches (kafka-enrich: 1 takes ~10% less CPU per event than 8; benchmarks/README.md)
    max_batches: int = Field(1, ge=1, description="batches a channel holds before put() waits")
    max_events: int = Field(20_000, ge=1, description="events a channel holds before put() waits")
    max_bytes: int = Field(16 << 20, ge=1, description=(
        "bytes (the raw size of its events) a channel holds before put() waits; one larger batch "
        "still passes, alone"))


class HttpSettings(ConfigModel):
    """The operations HTTP server (/metrics, /healthz, /readyz); off unless configured."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 in a container)")
    port: int = Field(8080, ge=0, le=65535, description="port (0 picks a free one)")
    tls: ServerTls | None = Field(None, description="serve HTTPS (`{certfile, keyfile, password, "
                                                    "client_cafile, min_version}`); `client_cafile` "
                                                    "requires client certificates (mutual TLS)")


class PipelineSettings(ConfigModel):
    """Engine settings of one pipeline."""

    model_config = ConfigDict(extra="forbid")

    shutdown_timeout: float = Field(30.0, gt=0, description="seconds a graceful drain may take")
    commit_interval: float = Field(1.0, gt=0, description="seconds between checkpoint commits")
    delivery: Literal["at_least_once", "exactly_once"] = Field("at_least_once", description=(
        "`exactly_once`: Kafka in and out only; outputs, dead letters, state changes and input offsets are "
        "written in one transaction per commit interval (readers need `isolation_level: read_committed`)"))
    channel: ChannelSettings = Field(default_factory=ChannelSettings)
    sink_retry: Backoff = Field(default_factory=Backoff, description=(
        "how a failing sink write is retried (backpressure holds the source meanwhile); "
        "`max_attempts` reached fails the pipeline"))
    http: HttpSettings | None = Field(None, description="serve /metrics, /healthz and /readyz")
    # -- stall detection (contract 5: a pipeline that stops is never silent)
    stall_timeout: float | None = Field(300.0, gt=0, description=(
        "seconds without progress while events wait (in a channel or a sink write) after which the "
        "pipeline is stalled: /readyz 503, streamflow_stalled 1, a warning; null: never"))
    stall_unhealthy: bool = Field(False, description=(
        "a stalled pipeline also fails /healthz, so a liveness probe restarts it"))
    tracing: Literal["off", "otlp"] = Field("off", description=(
        "`otlp`: a span per batch per stage, exported over OTLP/HTTP as the `OTEL_*` environment "
        "variables say, with W3C `traceparent` carried through Kafka headers (the `otel` extra)"))

    @field_validator("tracing")
    @classmethod
    def _tracing_installed(cls, value: str) -> str:
        if value != "off" and (missing := missing_tracing_modules()):
            raise ValueError(f"tracing: {value} needs the `otel` extra (pip install 'streamflow[otel]'); "
                             f"cannot import {', '.join(missing)}")
        return value
