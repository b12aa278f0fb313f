"""``protobuf``: protobuf messages in the schema-registry wire format, read into dicts.

The message type is a generated class named by the stage's ``message``
(``module:Class``): Python's protobuf cannot compile the .proto text a
registry serves. A payload's message-index path must name that class's
message. Values decode by protobuf's JSON mapping with the field names of
the .proto (64-bit integers become strings, as in that mapping); encoding
takes such a dict or a message. The writer schema registered is the
``schema`` text (a .proto file) when given, else the class's file
descriptor, base64-encoded — a form Confluent's registry accepts.
"""

from __future__ import annotations

import base64
from typing import Any

from ..core.registry import CODECS
from .registry import wire
from .registry.client import RegisteredSchema
from .registry.codec import RegistryCodec, missing_library


def index_path(descriptor: Any) -> list[int]:
    """The message-index path of a message descriptor in its file (``[0]``: the first message)."""
    path: list[int] = []
    while descriptor.containing_type is not None:
        parent = descriptor.containing_type
        path.append(list(parent.nested_types).index(descriptor))
        descriptor = parent
    path.append(list(descriptor.file.message_types_by_name.values()).index(descriptor))
    return path[::-1]


@CODECS.register("protobuf")
class ProtobufCodec(RegistryCodec):
    """Protobuf messages of one generated class <-> dicts."""

    schema_type = "PROTOBUF"
    extra = "protobuf"

    def setup(self) -> None:
        try:
            from google.protobuf import json_format
        except ImportError:
            raise missing_library("protobuf", "protobuf", self.extra) from None
        cls = self.options.message
        if cls is None or not hasattr(cls, "DESCRIPTOR"):
            raise ValueError("the protobuf codec needs `message`: the generated message class (module:Class)")
        self._json_format = json_format
        self._cls: Any = cls
        self._path = index_path(cls.DESCRIPTOR)
        self._prefix = wire.message_indexes(self._path)

    def reader(self, schema: RegisteredSchema) -> Any:
        return self._cls

    def read(self, reader: Any, body: memoryview) -> Any:
        indexes, message = wire.split_indexes(body)
        if indexes != self._path:
            raise ValueError(f"message index path {indexes} is not {self._cls.DESCRIPTOR.full_name} "
                                   f"({self._path})")
        parsed = reader.FromString(bytes(message))
        return self._json_format.MessageToDict(parsed, preserving_proto_field_name=True,
                                               always_print_fields_with_no_presence=True)

    def writer_text(self) -> str:
        if self.options.schema is not None:
            return self.options.schema
        return base64.standard_b64encode(self._cls.DESCRIPTOR.file.serialized_pb).decode("ascii")

    def record_name(self) -> str | None:
        return str(self._cls.DESCRIPTOR.full_name)

    def write(self, value: Any) -> bytes:
        message = value if isinstance(value, self._cls) else self._json_format.ParseDict(value, self._cls())
        return self._prefix + bytes(message.SerializeToString())
