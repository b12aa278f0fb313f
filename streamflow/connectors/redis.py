"""Redis connections (redis-py's asyncio client, the ``redis`` extra): the keys, the client, error kinds.

Shared by the ``redis`` sink, the ``redis_stream`` source and enrich's
``redis`` lookup. redis-py is imported when a component opens, so streamflow
works without it. TLS is on with a ``rediss://`` URL; ``ca_file``,
``cert_file``/``key_file`` (mutual TLS) and ``verify`` tune it.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ..core.configs import ConfigModel


class RedisConnection(ConfigModel):
    """Where the server is, how to log in and how long to wait."""

    url: SecretStr = Field(SecretStr("redis://127.0.0.1:6379/0"),
                           description="redis://host:port/db, or rediss:// for TLS; default "
                                       "redis://127.0.0.1:6379/0 (never logged: a password in it is welcome)")
    username: str | None = Field(None, description="ACL user name (default: the URL's, else `default`)")
    password: SecretStr | None = Field(None, description="password, if not in `url` (never logged)")
    ca_file: str | None = Field(None, description="rediss: PEM file of the CA(s) that sign the server's "
                                                  "certificate (default: the system's)")
    cert_file: str | None = Field(None, description="rediss: client certificate (PEM) for mutual TLS")
    key_file: str | None = Field(None, description="rediss: private key (PEM) of `cert_file`")
    verify: bool = Field(True, description="rediss: verify the server's certificate and host name")
    pool_size: int = Field(8, ge=1, description="connections kept open at most")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to establish a connection")
    timeout: float = Field(30.0, gt=0, description="seconds one command (or pipeline) may take")

    @field_validator("password", "username", "ca_file", "cert_file", "key_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """``${REDIS_PASSWORD:-}`` of an unset variable is ``""``: the same as leaving the key out."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_url(self) -> RedisConnection:
        scheme = urlsplit(self.url.get_secret_value()).scheme
        if scheme not in ("redis", "rediss"):
            raise ValueError(f"`url` must start with redis:// or rediss:// (TLS), not {scheme or '(none)'}://")
        tls_keys = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if scheme == "redis" and (tls_keys or not self.verify):
            raise ValueError(f"{', '.join(f'`{k}`' for k in tls_keys) or '`verify`'} needs a rediss:// url")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mutual TLS needs both `cert_file` and `key_file`")
        return self

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of ``redis.asyncio.Redis.from_url`` for this connection."""
        options: dict[str, Any] = {
            "max_connections": self.pool_size, "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.timeout, "protocol": 2,
        }
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password.get_secret_value()
        if urlsplit(self.url.get_secret_value()).scheme == "rediss":
            options.update(ssl_ca_certs=self.ca_file, ssl_certfile=self.cert_file, ssl_keyfile=self.key_file,
                           ssl_cert_reqs="required" if self.verify else "none", ssl_check_hostname=self.verify)
        return options


def redis_module() -> Any:
    """The ``redis.asyncio`` module, or a clear error naming the extra that installs it."""
    try:
        return importlib.import_module("redis.asyncio")
    except ImportError:
        raise ValueError("Redis needs the redis package: pip install 'streamflow[redis]'") from None


async def connect(config: RedisConnection, **overrides: Any) -> Any:
    """A client (a pool of up to ``pool_size`` connections), checked with a PING: a bad URL fails here."""
    client = redis_module().Redis.from_url(config.url.get_secret_value(),
                                           **{**config.client_options(), **overrides})
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


async def disconnect(client: Any) -> None:
    """Close ``client`` and its connections (None: nothing to close)."""
    if client is not None:
        await client.aclose()


def no_retry() -> Any:
    """redis-py's retry policy of no retries: a command that failed is not sent again behind our back.

    The streams source needs it: an XREADGROUP whose answer was lost and that the
    client sent again has delivered entries nobody saw (they stay pending).
    """
    redis_module()  # the clear error when redis-py is missing
    retry = importlib.import_module("redis.asyncio.retry")
    return retry.Retry(importlib.import_module("redis.backoff").NoBackoff(), 0)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the connection failed or timed out, the server is loading, busy or out of memory."""
    exceptions = importlib.import_module("redis.exceptions")
    if isinstance(exc, (exceptions.AuthenticationError, exceptions.AuthorizationError)):
        return False  # a wrong password stays wrong
    if isinstance(exc, (exceptions.ConnectionError, exceptions.TimeoutError, OSError, TimeoutError)):
        return True
    return isinstance(exc, (exceptions.BusyLoadingError, exceptions.TryAgainError)) or \
        str(exc).startswith(("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "OOM"))
