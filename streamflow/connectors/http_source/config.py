"""The config of the HTTP source (``type: http``): listening, auth, limits, TLS."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ...core.configs import ConfigModel
from ...core.stage import ComponentConfig
from ...security.signatures import SignatureConfig
from ...security.tls import ServerTls

#: What a JSON event that is not an object becomes: refused (422), accepted as is, or ``{"value": …}``.
NonObject = Literal["reject", "accept", "wrap"]


class RateLimit(ConfigModel):
    """A token bucket per client address: ``per_second`` requests on average, bursts of ``burst``."""

    per_second: float = Field(gt=0, description="requests a second one client may make on average")
    burst: int = Field(20, ge=1, description="requests one client may make at once before it is limited")


class HttpSourceConfig(ComponentConfig):
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on (0 picks a free one)")
    path: str = Field("/", description="URL path accepting POSTed events")
    # -- who may post
    auth_token: SecretStr | None = Field(
        None, description="require `Authorization: Bearer <token>` (use ${ENV_VAR}; never logged)")
    signature: SignatureConfig | None = Field(
        None, description="require an HMAC-SHA256 signature of the body (`{secret, header, prefix, "
                          "timestamp_header, template, tolerance}`)")
    tls: ServerTls | None = Field(
        None, description="serve HTTPS (`{certfile, keyfile, password, client_cafile, min_version}`); "
                          "`client_cafile` requires client certificates (mutual TLS)")
    # -- limits (contract 1 for a webhook) and deadlines
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1, description="larger request bodies get 413")
    max_inflight_bytes: int = Field(
        32 * 1024 * 1024, ge=1,
        description="request bodies held at once, from before they are read until they are answered; "
                    "a request waits up to `timeout` for room, then gets 503 with Retry-After")
    max_connections: int = Field(256, ge=1, description="open client connections; more get 503 and closed")
    header_timeout: float = Field(10.0, gt=0, description=(
        "seconds a connection may take for its TLS handshake and request headers, or stay idle"))
    body_timeout: float = Field(30.0, gt=0, description="seconds a request may take to send its body (408)")
    rate_limit: RateLimit | None = Field(None, description="per client address: `{per_second, burst}`; "
                                                           "over it, 429 with Retry-After")
    # -- content
    non_object: NonObject = Field("reject", description="a JSON event that is not an object (null, 42, "
                                                        "\"x\", a list): reject the request (422), "
                                                        "accept it as is, or wrap it as {\"value\": …}")
    # -- backpressure and acknowledgement
    timeout: float = Field(5.0, gt=0, description="seconds a request waits for room in the queue "
                                                  "before it is answered 503 with Retry-After")
    ack_timeout: float = Field(30.0, gt=0, description="seconds a request waits for its events to be "
                                                       "acknowledged downstream before it is answered 504")
    queue_size: int = Field(4, ge=1, description="requests (batches) buffered between the server and "
                                                 "the pipeline")
    retry_after: int = Field(1, ge=0, description="seconds in the Retry-After header of a 503")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must start with '/'")
        return v

    @model_validator(mode="after")
    def _one_body_fits(self) -> HttpSourceConfig:
        if self.max_body_bytes > self.max_inflight_bytes:
            raise ValueError(f"max_body_bytes ({self.max_body_bytes}) must not exceed max_inflight_bytes "
                             f"({self.max_inflight_bytes}): a body that fits must fit the budget")
        return self
