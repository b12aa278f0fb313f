"""A stand-in schema registry for the tests: OUR OWN small aiohttp server, not a real registry.

No schema registry server could be had on this machine (Confluent's is not
on Maven Central; Apicurio's Maven artifacts are a Quarkus application's
classes with no runnable jar; Karapace is not on PyPI), so the codecs are
tested against this server, which speaks the part of the Confluent REST API
the client uses, as the Confluent documentation describes it:

- ``GET /schemas/ids/{id}`` -> ``{"schema": …, "schemaType": …}`` (no
  ``schemaType`` for Avro); 404 with ``error_code`` 40403 if unknown.
- ``POST /subjects/{subject}/versions`` registers (the same schema text and
  type get the same id, under any subject) -> ``{"id": …}``; 422 (42201)
  for an Avro or JSON schema that is not JSON.
- ``POST /subjects/{subject}`` looks a schema up -> ``{"subject", "id",
  "version", "schema"}``; 404 (40401 no subject, 40403 not under it).
- ``GET /subjects`` and ``GET /subjects/{subject}/versions``.

With ``username``/``password`` or ``token`` it answers 401 (40101) to
requests without them. ``fail_next`` makes the next N requests answer 503.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BasicAuth, web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error_code": code, "message": message}, status=status,
                             content_type="application/vnd.schemaregistry.v1+json")


@dataclass
class StandInRegistry:
    """The registry's state, its aiohttp app, and what the tests look at."""

    username: str | None = None
    password: str | None = None
    token: str | None = None
    schemas: dict[int, tuple[str, str]] = field(default_factory=dict)   # id -> (type, text)
    subjects: dict[str, list[int]] = field(default_factory=dict)         # subject -> ids by version
    requests: list[str] = field(default_factory=list)                   # "METHOD path" received
    fail_next: int = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/schemas/ids/{id}", self._get_schema)
        app.router.add_get("/subjects", self._list_subjects)
        app.router.add_get("/subjects/{subject}/versions", self._versions)
        app.router.add_post("/subjects/{subject}/versions", self._register)
        app.router.add_post("/subjects/{subject}", self._lookup)
        return app

    def add(self, subject: str, text: str, schema_type: str = "AVRO") -> int:
        """Register a schema directly (as another producer would have); its id."""
        schema_id = next((i for i, s in self.schemas.items() if s == (schema_type, text)), None)
        if schema_id is None:
            schema_id = len(self.schemas) + 1
            self.schemas[schema_id] = (schema_type, text)
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.fail_next > 0:
            self.fail_next -= 1
            return _error(503, 50301, "unavailable (as the test asked)")
        if not self._authorized(request):
            return _error(401, 40101, "Unauthorized")
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.token is not None:
            return header == f"Bearer {self.token}"
        if self.username is not None:
            try:
                auth = BasicAuth.decode(header)
            except ValueError:
                return False
            return (auth.login, auth.password) == (self.username, self.password)
        return True

    async def _get_schema(self, request: web.Request) -> web.Response:
        found = self.schemas.get(int(request.match_info["id"]))
        if found is None:
            return _error(404, 40403, "Schema not found")
        body: dict[str, Any] = {"schema": found[1]}
        if found[0] != "AVRO":
            body["schemaType"] = found[0]
        return web.json_response(body)

    async def _list_subjects(self, request: web.Request) -> web.Response:
        return web.json_response(sorted(self.subjects))

    async def _versions(self, request: web.Request) -> web.Response:
        versions = self.subjects.get(request.match_info["subject"])
        if versions is None:
            return _error(404, 40401, "Subject not found")
        return web.json_response(list(range(1, len(versions) + 1)))

    async def _body(self, request: web.Request) -> tuple[str, str]:
        body = json.loads(await request.read())
        return body.get("schemaType", "AVRO"), body["schema"]

    async def _register(self, request: web.Request) -> web.Response:
        schema_type, text = await self._body(request)
        if schema_type in ("AVRO", "JSON"):
            try:
                json.loads(text)
            except ValueError:
                return _error(422, 42201, "Invalid schema")
        return web.json_response({"id": self.add(request.match_info["subject"], text, schema_type)})

    async def _lookup(self, request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        schema_type, text = await self._body(request)
        versions = self.subjects.get(subject)
        if versions is None:
            return _error(404, 40401, "Subject not found")
        for version, schema_id in enumerate(versions, 1):
            if self.schemas[schema_id] == (schema_type, text):
                return web.json_response({"subject": subject, "id": schema_id, "version": version,
                                          "schema": text})
        return _error(404, 40403, "Schema not found")


async def serve(registry: StandInRegistry, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    """Start ``registry`` on a free port of 127.0.0.1: its runner (to clean up) and base URL."""
    runner = web.AppRunner(registry.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
