"""Schema-registry support: the REST client, the Confluent wire format, subject strategies, the codec base."""

from .client import RegisteredSchema, RegistryError, SchemaRegistry, SchemaRegistryConfig
from .codec import RegistryCodec, RegistryOptions, SchemaCodecError
from .subjects import SubjectStrategy, subject_name

__all__ = ["RegisteredSchema", "RegistryCodec", "RegistryError", "RegistryOptions", "SchemaCodecError",
           "SchemaRegistry", "SchemaRegistryConfig", "SubjectStrategy", "subject_name"]
