"""An async client of a schema registry's REST API (Confluent's, also served by Apicurio and Karapace).

Schemas are immutable per id, so a fetched schema is kept for the life of
the client; concurrent fetches of one id share one request (single-flight).
A registered (or looked-up) writer schema's id is kept per subject and
schema text. Connection failures and 5xx answers are retried with the
client's `Backoff`; other answers raise `RegistryError` with the registry's
own error code and message.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import Field, SecretStr, field_validator, model_validator

from ...core.backoff import Backoff
from ...core.configs import ConfigModel

#: The registry's media type (it also accepts plain application/json).
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"

T = TypeVar("T")


class SchemaRegistryConfig(ConfigModel):
    """Where the schema registry is and how to authenticate to it."""

    url: str = Field(description="base URL of the registry's REST API, e.g. http://localhost:8081 "
                                 "(Apicurio: …/apis/ccompat/v7)")
    username: str | None = Field(None, description="basic auth user (with `password`)")
    password: SecretStr | None = Field(None, description="basic auth password (never logged)")
    token: SecretStr | None = Field(None, description="bearer token sent as `Authorization: Bearer …` "
                                                      "(never logged)")
    ca_file: str | None = Field(None, description="PEM file of the CA(s) that sign the registry's certificate")
    cert_file: str | None = Field(None, description="client certificate (PEM) for mutual TLS")
    key_file: str | None = Field(None, description="private key (PEM) of `cert_file`")
    verify: bool = Field(True, description="verify the registry's TLS certificate")
    timeout: float = Field(10.0, gt=0, description="seconds one request may take")
    retry: Backoff = Field(default_factory=lambda: Backoff(max_attempts=5),
                           description="how unreachable registries and 5xx answers are retried")

    @field_validator("username", "password", "token", "ca_file", "cert_file", "key_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """``${VAR:-}`` of an unset variable is ``""``: the same as leaving the key out."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> SchemaRegistryConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must start with http:// or https://, got {self.url!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both `username` and `password`")
        if self.token is not None and self.username is not None:
            raise ValueError("give `username`/`password` or `token`, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mutual TLS needs both `cert_file` and `key_file`")
        return self


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A schema as the registry serves it: its id, type (AVRO, PROTOBUF, JSON) and text."""

    id: int
    schema_type: str
    text: str


class RegistryError(RuntimeError):
    """The registry answered with an error (``status``, its ``error_code``) or could not be reached."""

    def __init__(self, message: str, status: int | None = None, error_code: int | None = None,
                 transient: bool | None = None) -> None:
        super().__init__(message)
        self.status, self.error_code = status, error_code
        #: Worth retrying: by default no answer at all, or a server-side error.
        self.transient = status is None or status >= 500 if transient is None else transient


class SchemaRegistry:
    """Fetches schemas by id and registers writer schemas, with caches; `open` before use."""

    def __init__(self, config: SchemaRegistryConfig) -> None:
        self.config = config
        self._base = config.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._by_id: dict[int, RegisteredSchema] = {}
        self._ids: dict[tuple[str, str, str, bool], int] = {}
        # imported here: `streamflow.transforms` imports the codecs, so a module-level import would be circular
        from ...transforms.cache import SingleFlight

        self._flight = SingleFlight()
        #: HTTP requests sent (retries included): what the caches save.
        self.requests = 0

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The TLS settings of the connection (True: the system's defaults)."""
        cfg = self.config
        if cfg.ca_file is None and cfg.cert_file is None and cfg.verify:
            return True
        context = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.cert_file is not None:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        if not cfg.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def open(self) -> None:
        cfg = self.config
        headers = {"Accept": f"{MEDIA_TYPE}, application/json"}
        if cfg.username is not None and cfg.password is not None:
            pair = f"{cfg.username}:{cfg.password.get_secret_value()}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
        if cfg.token is not None:
            headers["Authorization"] = f"Bearer {cfg.token.get_secret_value()}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=cfg.timeout),
            connector=aiohttp.TCPConnector(ssl=self.ssl_context()))

    async def close(self) -> None:
        self._flight.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API ------------------------------------------------------------------------
    def cached(self, schema_id: int) -> RegisteredSchema | None:
        """The schema of ``schema_id`` if it was fetched already."""
        return self._by_id.get(schema_id)

    async def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema registered under ``schema_id`` (fetched once, then from the cache)."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        fetched: RegisteredSchema = await self._flight.do(("id", schema_id), lambda: self._fetch(schema_id))
        return fetched

    async def _fetch(self, schema_id: int) -> RegisteredSchema:
        body = await self._request("GET", f"/schemas/ids/{schema_id}")
        found = RegisteredSchema(schema_id, body.get("schemaType") or "AVRO", body["schema"])
        self._by_id[schema_id] = found
        return found

    async def id_for(self, subject: str, text: str, schema_type: str, register: bool = True) -> int:
        """The id of schema ``text`` under ``subject``: registered if new (``register``), else looked up."""
        key = (subject, schema_type, text, register)
        found = self._ids.get(key)
        if found is not None:
            return found
        return int(await self._flight.do(key, lambda: self._subject_id(subject, text, schema_type, register)))

    async def _subject_id(self, subject: str, text: str, schema_type: str, register: bool) -> int:
        payload: dict[str, Any] = {"schema": text}
        if schema_type != "AVRO":
            payload["schemaType"] = schema_type
        path = f"/subjects/{quote(subject, safe='')}"
        body = await self._request("POST", f"{path}/versions" if register else path, payload)
        schema_id = int(body["id"])
        self._ids[(subject, schema_type, text, register)] = schema_id
        self._by_id.setdefault(schema_id, RegisteredSchema(schema_id, schema_type, text))
        return schema_id

    # -- HTTP ---------------------------------------------------------------------------
    async def _request(self, method: str, path: str, payload: Any = None) -> Any:
        """One API call's JSON answer, retrying what is transient with the configured `Backoff`."""
        return await retrying(self.config.retry, lambda: self._send(method, path, payload))

    async def _send(self, method: str, path: str, payload: Any) -> Any:
        if self._session is None:
            raise RuntimeError("the schema registry client is not open")
        url = self._base + path
        data = None if payload is None else orjson.dumps(payload)
        self.requests += 1
        try:
            async with self._session.request(method, url, data=data,
                                             headers={"Content-Type": MEDIA_TYPE}) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # a certificate the settings do not trust stays untrusted: not worth retrying
            raise RegistryError(f"schema registry {method} {url}: {type(exc).__name__}: {exc}",
                                transient=not isinstance(exc, aiohttp.ClientSSLError)) from exc
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {"message": raw[:200].decode("utf-8", "replace")}
        if status // 100 != 2:
            detail = body.get("message", "") if isinstance(body, dict) else ""
            code = body.get("error_code") if isinstance(body, dict) else None
            raise RegistryError(f"schema registry {method} {url} answered {status}"
                                f"{f' ({code})' if code else ''}: {detail}", status, code)
        return body


async def retrying(backoff: Backoff, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``'s result, retried after transient `RegistryError`s as ``backoff`` allows."""
    attempts = 0
    while True:
        attempts += 1
        try:
            return await attempt()
        except RegistryError as exc:
            if not exc.transient or backoff.exhausted(attempts):
                raise
        await asyncio.sleep(backoff.delay(attempts))
