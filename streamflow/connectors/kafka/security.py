"""Connection and security settings shared by the Kafka source and sink.

`KafkaConnection` is a config mixin: the source and sink configs inherit its
keys (bootstrap servers, TLS, SASL), and `client_options` turns them into the
keyword arguments aiokafka's consumer and producer take. Passwords are
`SecretStr`: they never appear in a repr, a log line or a dumped config.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaConnection(BaseModel):
    """Where the brokers are and how to authenticate to them."""

    # validation errors never echo the input: it may hold a password
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    bootstrap_servers: str = Field(
        "localhost:9092", description="comma-separated host:port list of brokers to bootstrap from")
    client_id: str | None = Field(None, description="client id the brokers see (default: streamflow-<stage>)")
    request_timeout_ms: int = Field(30_000, ge=1000, description="timeout of one request to a broker")
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: SaslMechanism | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (required with SASL_*)")
    sasl_plain_username: str | None = Field(None, description="SASL user name")
    sasl_plain_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_cafile: str | None = Field(None, description="CA bundle that signs the brokers' certificates "
                                                     "(default: the system's)")
    ssl_certfile: str | None = Field(None, description="client certificate (PEM) for mutual TLS")
    ssl_keyfile: str | None = Field(None, description="private key of ssl_certfile, if not inside it")
    ssl_password: SecretStr | None = Field(None, description="password of ssl_keyfile (never logged)")
    ssl_check_hostname: bool = Field(True, description="verify that broker certificates match their host names")

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _join_list(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return ",".join(str(s).strip() for s in v)
        return v

    @field_validator("bootstrap_servers")
    @classmethod
    def _has_servers(cls, v: str) -> str:
        servers = [s.strip() for s in v.split(",") if s.strip()]
        if not servers:
            raise ValueError("at least one host:port is required")
        for s in servers:
            host, sep, port = s.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port, got {s!r}")
        return ",".join(servers)

    @model_validator(mode="after")
    def _check_security(self) -> KafkaConnection:
        sasl = self.security_protocol.startswith("SASL_")
        ssl = self.security_protocol.endswith("SSL")
        if sasl:
            missing = [k for k in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password")
                       if getattr(self, k) is None]
            if missing:
                raise ValueError(f"security_protocol {self.security_protocol} needs {', '.join(missing)}")
        elif self.sasl_mechanism or self.sasl_plain_username or self.sasl_plain_password:
            raise ValueError("sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL")
        if not ssl and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile or self.ssl_password):
            raise ValueError("ssl_* settings need security_protocol SSL or SASL_SSL")
        if (self.ssl_keyfile or self.ssl_password) and not self.ssl_certfile:
            raise ValueError("ssl_keyfile/ssl_password need ssl_certfile")
        return self

    def client_options(self, default_client_id: str, *keys: str, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for `AIOKafkaConsumer` / `AIOKafkaProducer` (builds the TLS context).

        ``keys`` are config keys passed on as they are, ``extra`` further arguments.
        """
        opts: dict[str, Any] = {key: getattr(self, key) for key in keys}
        opts.update(extra)
        opts.update({
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id or default_client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "security_protocol": self.security_protocol,
        })
        if self.security_protocol.startswith("SASL_"):
            assert self.sasl_plain_password is not None
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_plain_username
            opts["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            opts["ssl_context"] = self.ssl_context()
        return opts

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for SSL/SASL_SSL (reads the certificate files)."""
        ctx: ssl.SSLContext = create_ssl_context(
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=self.ssl_password.get_secret_value() if self.ssl_password else None,
        )
        ctx.check_hostname = self.ssl_check_hostname
        return ctx

