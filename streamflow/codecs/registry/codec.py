"""`RegistryCodec`: the base of codecs whose payloads name their schema by a registry id.

Decoding and encoding are synchronous, as for every codec, and need the
schemas at hand: `prepare_decode` fetches the schemas a batch of payloads
names (once per id, cached in the `SchemaRegistry`), `prepare_encode`
registers (or looks up) the writer schema under its subject. The stages
`schema_decode` and `schema_encode` call them once per batch.

A payload that fails — not the wire format, an unknown schema id, a body
the schema does not read, a value it does not validate — raises
`SchemaCodecError`, which carries the schema id into the dead-letter record.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Codec
from . import wire
from .client import RegisteredSchema, RegistryError, SchemaRegistry
from .subjects import SubjectStrategy, subject_name


class SchemaCodecError(ValueError):
    """A payload or value a registry codec cannot handle; ``schema_id`` is None when none was read."""

    def __init__(self, message: str, schema_id: int | None = None) -> None:
        super().__init__(message if schema_id is None else f"schema id {schema_id}: {message}")
        self.schema_id = schema_id

    @property
    def dead_letter_fields(self) -> dict[str, Any]:
        """Fields added to the dead-letter record (and ``streamflow.<name>`` headers)."""
        return {} if self.schema_id is None else {"schema_id": self.schema_id}


@dataclass(frozen=True)
class RegistryOptions:
    """What a registry codec is configured with (by its stage's config)."""

    registry: SchemaRegistry
    #: Schema text: the writer schema (encoding) or the Avro reader schema (decoding); None: none given.
    schema: str | None = None
    #: The generated protobuf message class (protobuf only).
    message: Callable[..., Any] | None = None
    subject_strategy: SubjectStrategy = "topic"
    topic: str | None = None
    key: bool = False
    #: Register the writer schema if new (else only look it up: it must be registered already).
    register: bool = True


class RegistryCodec(Codec):
    """A codec of the Confluent wire format; subclasses say how one schema type reads and writes."""

    #: The registry's ``schemaType`` of this codec's schemas.
    schema_type: ClassVar[str]
    #: The pip extra that installs this codec's library.
    extra: ClassVar[str]

    def __init__(self, options: RegistryOptions | None = None) -> None:
        if options is None:
            raise ValueError(f"codec {self.type_name!r} reads and writes the schema-registry wire format and "
                             f"needs a registry: use it in a `schema_decode` or `schema_encode` stage "
                             f"(the connector itself then uses `codec: raw`)")
        self.options = options
        self.registry = options.registry
        self._readers: dict[int, Any] = {}
        self._failed: dict[int, Exception] = {}
        self._writer_id: int | None = None
        self.setup()

    def setup(self) -> None:
        """Import the codec's library and read its options (raises ValueError on bad ones)."""

    # -- per schema type ------------------------------------------------------------------
    @abstractmethod
    def reader(self, schema: RegisteredSchema) -> Any:
        """What `read` needs to decode payloads written with ``schema`` (raises on a bad schema)."""

    @abstractmethod
    def read(self, reader: Any, body: memoryview) -> Any:
        """The value of one payload's body."""

    @abstractmethod
    def writer_text(self) -> str:
        """The text of the writer schema, as registered."""

    @abstractmethod
    def record_name(self) -> str | None:
        """The writer schema's full name (for the record subject strategies)."""

    @abstractmethod
    def write(self, value: Any) -> bytes:
        """One value's body (after the header), validated against the writer schema."""

    # -- decoding -------------------------------------------------------------------------
    async def prepare_decode(self, payloads: list[bytes]) -> None:
        """Fetch the schemas ``payloads`` name that are not at hand yet (a failure is kept per id:
        `decode` raises it for that id's payloads; the next batch tries again)."""
        ids = {i for p in payloads if (i := wire.schema_id_of(p)) is not None and i not in self._readers}
        if not ids:
            return
        wanted = sorted(ids)
        results = await asyncio.gather(*(self.registry.schema(i) for i in wanted), return_exceptions=True)
        for schema_id, result in zip(wanted, results, strict=True):
            self._failed.pop(schema_id, None)
            if isinstance(result, RegistryError):
                self._failed[schema_id] = result
            elif isinstance(result, BaseException):
                raise result
            else:
                self._add_reader(result)

    def _add_reader(self, schema: RegisteredSchema) -> None:
        if schema.schema_type != self.schema_type:
            self._failed[schema.id] = SchemaCodecError(
                f"is a {schema.schema_type} schema, not {self.schema_type} (codec {self.type_name})", schema.id)
            return
        try:
            self._readers[schema.id] = self.reader(schema)
        except Exception as exc:  # noqa: BLE001 - a schema library may raise anything on a bad schema
            self._failed[schema.id] = SchemaCodecError(f"cannot read the schema: {exc}", schema.id)

    def decode(self, data: bytes) -> Any:
        try:
            schema_id, body = wire.split(data)
        except wire.WireFormatError as exc:
            raise SchemaCodecError(str(exc)) from None
        reader = self._readers.get(schema_id)
        if reader is None:
            failure = self._failed.get(schema_id)
            if isinstance(failure, SchemaCodecError):
                raise failure
            raise SchemaCodecError(f"schema not available: {failure or 'not fetched (call prepare_decode)'}",
                                   schema_id)
        try:
            return self.read(reader, body)
        except Exception as exc:  # noqa: BLE001 - a schema library may raise anything on a bad body
            raise SchemaCodecError(f"cannot decode the {self.schema_type} body: {type(exc).__name__}: {exc}",
                                   schema_id) from exc

    def decode_many(self, frames: list[bytes]) -> list[Any]:
        """Every payload's value in one loop; raises on any failure (then `decode` each, for the error)."""
        readers, read = self._readers, self.read
        header = wire.HEADER.size
        return [read(readers[int.from_bytes(f[1:header], "big")] if f[0] == wire.MAGIC else None,
                     memoryview(f)[header:]) for f in frames]

    # -- encoding -------------------------------------------------------------------------
    def subject(self) -> str:
        """The subject the writer schema is registered under."""
        opts = self.options
        return subject_name(opts.subject_strategy, opts.topic, self.record_name(), opts.key)

    async def prepare_encode(self) -> int:
        """The writer schema's id: registered (or looked up) once, then kept."""
        if self._writer_id is None:
            opts = self.options
            self._writer_id = await self.registry.id_for(self.subject(), self.writer_text(),
                                                         self.schema_type, opts.register)
        return self._writer_id

    def encode(self, value: Any) -> bytes:
        schema_id = self._writer_id
        if schema_id is None:
            raise RuntimeError("the writer schema has no id yet (call prepare_encode)")
        try:
            return wire.header(schema_id) + self.write(value)
        except Exception as exc:  # noqa: BLE001 - a schema library may raise anything on a bad value
            raise SchemaCodecError(f"cannot encode the value as {self.schema_type}: {type(exc).__name__}: "
                                   f"{exc}", schema_id) from exc


def missing_library(codec: str, module: str, extra: str) -> ValueError:
    """The error of a codec whose library is not installed."""
    return ValueError(f"codec {codec!r} needs the {module!r} package: pip install 'streamflow[{extra}]'")
