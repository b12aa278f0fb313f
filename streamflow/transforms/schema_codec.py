"""schema_decode / schema_encode: the schema-registry codecs (avro, protobuf, json_schema) as stages.

A Kafka source with ``codec: raw`` hands the payload bytes to
``schema_decode``, which fetches each schema id a batch names once (cached)
and decodes every payload; ``schema_encode`` registers or looks up the
writer schema under its subject once and writes each value in the wire
format, for a Kafka sink with ``codec: raw``. A payload or value that fails
goes to the stage's ``on_error`` policy; its dead-letter record carries the
schema id (field ``schema_id``, header ``streamflow.schema_id``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from pydantic import Field, model_validator

from ..codecs.registry.client import RegistryError, SchemaRegistry, SchemaRegistryConfig
from ..codecs.registry.codec import RegistryCodec, RegistryOptions
from ..codecs.registry.subjects import SubjectStrategy
from ..core.batch import Batch
from ..core.message import Message
from ..core.refs import FunctionRef
from ..core.registry import CODECS, TRANSFORMS
from ..core.stage import EventTransformConfig, StageContext
from .base import EventTransform

RegistryCodecName = Literal["avro", "protobuf", "json_schema"]


class SchemaStageConfig(EventTransformConfig):
    """Keys shared by `schema_decode` and `schema_encode`."""

    codec: RegistryCodecName = Field(description="avro (fastavro), protobuf or json_schema (jsonschema)")
    registry: SchemaRegistryConfig = Field(description="the schema registry: `url`, auth, TLS (see Schema "
                                                       "registries)")
    message: FunctionRef | None = Field(None, description="protobuf: the generated message class "
                                                          "(`module:Class`)")
    schema_: str | dict[str, Any] | None = Field(None, alias="schema", description="the schema")

    def schema_text(self, schema: str | dict[str, Any] | None) -> str | None:
        """A ``schema`` key's text: an inline mapping as JSON, a path as the file's contents."""
        if schema is None or isinstance(schema, str) and not schema:
            return None
        if isinstance(schema, dict):
            return orjson.dumps(schema).decode()
        return Path(schema).read_text(encoding="utf-8")

    @model_validator(mode="after")
    def _check_message(self) -> SchemaStageConfig:
        if (self.codec == "protobuf") != (self.message is not None):
            raise ValueError("`message` (the generated class, module:Class) is required with codec: protobuf "
                             "and applies to it only")
        return self


class SchemaDecodeConfig(SchemaStageConfig):
    schema_: str | dict[str, Any] | None = Field(
        None, alias="schema", description="avro: the reader schema (a .avsc file or an inline mapping) the "
                                          "writer's schema is resolved to (default: read as written)")


class SchemaEncodeConfig(SchemaStageConfig):
    schema_: str | dict[str, Any] | None = Field(
        None, alias="schema", description="the writer schema: a file (.avsc, .json; .proto for protobuf) or "
                                          "an inline mapping; protobuf defaults to the class's descriptor")
    subject_strategy: SubjectStrategy = Field(
        "topic", description="subject of the writer schema: topic (`<topic>-value`), record (the schema's "
                             "full name) or topic_record (`<topic>-<name>`)")
    topic: str | None = Field(None, description="the output topic (for the topic strategies)")
    key: bool = Field(False, description="the schema is of record keys: subject `<topic>-key`")
    auto_register: bool = Field(True, description="register the writer schema if it is new; false: it must "
                                                  "be registered already (looked up)")

    @model_validator(mode="after")
    def _check_encode(self) -> SchemaEncodeConfig:
        if self.schema_ is None and self.codec != "protobuf":
            raise ValueError(f"`schema` (the writer schema) is required with codec: {self.codec}")
        if self.subject_strategy != "record" and not self.topic:
            raise ValueError(f"subject_strategy {self.subject_strategy} needs `topic`")
        return self


SC = TypeVar("SC", bound=SchemaStageConfig)


class _SchemaStage(EventTransform[SC]):
    """Opens the registry client and builds the stage's codec; subclasses say which way it works."""

    codec: RegistryCodec

    def setup(self) -> None:
        self.registry = SchemaRegistry(self.config.registry)

    @property
    def cpu_only(self) -> bool:
        return False  # it fetches the schemas it has not seen from the registry

    def check_inputs(self) -> list[tuple[str, str]]:
        schema = self.config.schema_
        if isinstance(schema, str) and schema and not Path(schema).is_file():
            return [("schema", f"no such file: {schema}")]
        return []

    def options(self, schema: str | None) -> RegistryOptions:
        return RegistryOptions(self.registry, schema, self.config.message)

    def fast(self, batch: Batch) -> Batch:
        """Every event's value first, then the values replaced: one that raises leaves none changed
        for the per-event path that handles it."""
        msgs = batch.messages
        values = [self.call(m) for m in msgs]
        for m, v in zip(msgs, values, strict=True):
            m.value = v
        return batch

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        cls = CODECS.get(self.config.codec)
        assert issubclass(cls, RegistryCodec)
        try:
            self.codec = cls(self.options(self.config.schema_text(self.config.schema_)))
        except (OSError, ValueError) as exc:
            raise ValueError(f"stage {self.name!r}: {exc}") from exc
        await self.registry.open()

    async def close(self) -> None:
        await self.registry.close()
        await super().close()


@TRANSFORMS.register("schema_decode")
class SchemaDecode(_SchemaStage[SchemaDecodeConfig]):
    """Decode payloads in the schema-registry wire format into values (the bytes stay in ``raw``)."""

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        payloads = [v for m in batch.messages if isinstance(v := m.value, bytes)]
        await self.codec.prepare_decode(payloads)
        return await super().process(batch)

    def fast(self, batch: Batch) -> Batch:
        """The whole batch decoded in one loop (`RegistryCodec.decode_many`); any failure: the
        per-event path, which sends each failing payload to ``on_error``."""
        msgs = batch.messages
        values = self.codec.decode_many([m.value for m in msgs])
        for m, v in zip(msgs, values, strict=True):
            if m.raw is None:
                m.raw = m.value
            m.value = v
        return batch

    def call(self, msg: Message) -> Any:
        data = msg.value
        if not isinstance(data, bytes):
            raise TypeError(f"schema_decode expects bytes (a source with `codec: raw`), got {type(data).__name__}")
        if msg.raw is None:
            msg.raw = data  # the original bytes, for a dead-letter record
        return self.codec.decode(data)

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        msg.value = result
        out.append(msg)


@TRANSFORMS.register("schema_encode")
class SchemaEncode(_SchemaStage[SchemaEncodeConfig]):
    """Encode values in the schema-registry wire format with the writer schema, registered by subject."""

    def setup(self) -> None:
        super().setup()
        self._unregistered: RegistryError | None = None

    def options(self, schema: str | None) -> RegistryOptions:
        cfg = self.config
        return RegistryOptions(self.registry, schema, cfg.message, cfg.subject_strategy, cfg.topic, cfg.key,
                               cfg.auto_register)

    async def process(self, batch: Batch) -> Batch | list[Batch] | None:
        try:
            await self.codec.prepare_encode()
            self._unregistered = None
        except RegistryError as exc:  # every event of the batch goes to on_error with it
            self._unregistered = exc
        return await super().process(batch)

    def call(self, msg: Message) -> Any:
        if self._unregistered is not None:
            raise self._unregistered
        return self.codec.encode(msg.value)

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        msg.value = result
        out.append(msg)
