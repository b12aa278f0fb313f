"""``json_schema``: JSON bodies validated by a JSON Schema (jsonschema), in the schema-registry wire format."""

from __future__ import annotations

from typing import Any

import orjson

from ..core.registry import CODECS
from .registry.client import RegisteredSchema
from .registry.codec import RegistryCodec, missing_library


@CODECS.register("json_schema")
class JsonSchemaCodec(RegistryCodec):
    """JSON values, each payload naming the schema it was validated by; invalid values raise."""

    schema_type = "JSON"
    extra = "json-schema"

    def setup(self) -> None:
        try:
            import jsonschema
        except ImportError:
            raise missing_library("json_schema", "jsonschema", self.extra) from None
        self._jsonschema = jsonschema
        self._writer: Any = None
        self._schema: dict[str, Any] = {}
        if self.options.schema is not None:
            try:
                self._schema = orjson.loads(self.options.schema)
                self._writer = self.reader(RegisteredSchema(0, self.schema_type, self.options.schema))
            except Exception as exc:  # noqa: BLE001 - orjson and jsonschema raise their own types
                raise ValueError(f"the JSON schema is not valid: {exc}") from exc

    def reader(self, schema: RegisteredSchema) -> Any:
        document = orjson.loads(schema.text)
        cls = self._jsonschema.validators.validator_for(document)
        cls.check_schema(document)
        return cls(document)

    def _validate(self, validator: Any, value: Any) -> None:
        error = self._jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(the value)"
            raise ValueError(f"not valid at {where}: {error.message}")

    def read(self, reader: Any, body: memoryview) -> Any:
        value = orjson.loads(body)
        self._validate(reader, value)
        return value

    def writer_text(self) -> str:
        if self.options.schema is None:
            raise ValueError("encoding with json_schema needs the writer `schema`")
        return self.options.schema

    def record_name(self) -> str | None:
        title = self._schema.get("title")
        return str(title) if title else None

    def write(self, value: Any) -> bytes:
        self._validate(self._writer, value)
        return orjson.dumps(value)
