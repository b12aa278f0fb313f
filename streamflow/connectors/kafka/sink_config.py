"""`KafkaSinkConfig`: the keys of ``type: kafka`` sinks, and which delivery errors mean what.

The sink re-sends on the pipeline's ``settings.sink_retry`` schedule (the one
`Backoff` of streamflow); it has no retry keys of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from aiokafka import codec as kafka_codecs
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTopicError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownProducerId,
)
from pydantic import Field, field_validator, model_validator

from ...codecs import CodecName
from ...core.errors import ErrorPolicy
from ...core.refs import FunctionRef
from ...core.stage import ComponentConfig
from ...transforms.fields import path_getter
from .security import KafkaConnection

#: Delivery errors that no retry can fix: the message goes to the sink's on_error policy.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError,
    TopicAuthorizationFailedError, ClusterAuthorizationFailedError,
)

#: Errors after which the producer itself is unusable: it is replaced by a new one, then re-sent.
BROKEN_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber, ProducerFenced, InvalidProducerEpoch, InvalidProducerIdMapping,
    UnknownProducerId, ProducerClosed,
)

#: Broker rejections of a record batch for its size: its records are re-sent one by one to find the culprit.
SIZE_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
)

#: compression_type -> whether its codec library is installed.
_COMPRESSION_AVAILABLE: dict[str, Callable[[], bool]] = {
    "gzip": kafka_codecs.has_gzip,
    "snappy": kafka_codecs.has_snappy,
    "lz4": kafka_codecs.has_lz4,
    "zstd": kafka_codecs.has_zstd,
}

#: Keys of earlier versions -> what to write instead.
_REMOVED_KEYS = {
    key: f"`{key}` was removed: the Kafka sink retries with the pipeline's `settings.sink_retry` "
         "(backoff, max_backoff, max_attempts)"
    for key in ("retry_backoff", "max_retry_backoff")
}


class KafkaSinkConfig(KafkaConnection, ComponentConfig):
    """Keys of ``type: kafka`` sinks."""

    topic: str | None = Field(None, description="topic every message goes to")
    topic_field: str | None = Field(None, description="dotted path of the value field naming the topic")
    topic_fn: FunctionRef | None = Field(None, description="`module:function(message) -> topic`")
    key_field: str | None = Field(None, description="dotted path of the value field used as the key "
                                                    "(default: the message's own key)")
    key_fn: FunctionRef | None = Field(None, description="`module:function(message) -> key`")
    headers: dict[str, str] = Field(default_factory=dict, description="static headers added to each message")
    pass_headers: bool = Field(True, description="write each message's own headers too")
    keep_timestamp: bool = Field(False, description="write the source timestamp instead of the send time")
    codec: CodecName = Field("json", description="how values are encoded; bytes values are written as they are")
    dead_letter_format: Literal["auto", "raw", "record"] = Field(
        "auto", description="raw: write the original key/value bytes and the error headers; record: "
                            "write the dead-letter record encoded with `codec`; auto: raw when this "
                            "sink is the pipeline's dead-letter sink")
    acks: Literal["all", 1, 0] = Field("all", description="broker acknowledgement a write waits for")
    enable_idempotence: bool = Field(True, description="no duplicates from the producer's own retries")
    linger_ms: int = Field(5, ge=0, description="how long the producer waits to fill a batch")
    max_batch_size: int = Field(256 * 1024, ge=1024, description="bytes per partition batch on the wire")
    max_request_size: int = Field(2**20, ge=1024, description="largest request (and message) sent")
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = Field(
        None, description="gzip always; snappy, lz4 and zstd need the cramjam package")
    max_in_flight: int = Field(4, ge=1, description="pipeline batches awaiting broker acks at once")
    connect_timeout: float = Field(60.0, gt=0, description="seconds to keep retrying the first connection")
    on_error: ErrorPolicy = Field(
        default_factory=ErrorPolicy,
        description="what to do with a message that cannot be encoded or that the brokers reject for "
                    "good (too large, invalid topic)")

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, instead in _REMOVED_KEYS.items():
                if key in data:
                    raise ValueError(instead)
        return data

    @field_validator("topic_field", "key_field")
    @classmethod
    def _valid_path(cls, v: str | None) -> str | None:
        if v is not None:
            path_getter(v)  # raises ValueError on a malformed dotted path
        return v

    @field_validator("compression_type")
    @classmethod
    def _compression_installed(cls, v: str | None) -> str | None:
        if v is not None and not _COMPRESSION_AVAILABLE[v]():
            raise ValueError(f"compression_type {v!r} needs the cramjam package (pip install cramjam); "
                             "gzip needs nothing")
        return v

    @model_validator(mode="after")
    def _check(self) -> KafkaSinkConfig:
        given = [k for k in ("topic", "topic_field", "topic_fn") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of `topic`, `topic_field` or `topic_fn`")
        if self.key_field and self.key_fn:
            raise ValueError("give at most one of `key_field` or `key_fn`")
        if self.enable_idempotence and self.acks != "all":
            raise ValueError("enable_idempotence needs acks: all")
        return self

    def producer_options(self, default_client_id: str) -> dict[str, Any]:
        """Keyword arguments for `AIOKafkaProducer` (connection, security and producer keys)."""
        return self.client_options(default_client_id, "acks", "enable_idempotence", "linger_ms",
                                   "max_batch_size", "max_request_size", "compression_type")
