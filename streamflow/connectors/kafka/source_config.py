"""`KafkaSourceConfig`: the keys of ``type: kafka`` sources."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ...codecs import CodecName
from ...core.stage import SourceConfig
from .security import KafkaConnection


class KafkaSourceConfig(KafkaConnection, SourceConfig):
    """Keys of ``type: kafka`` sources."""

    topics: list[str] | None = Field(None, description="topics to consume (or use `pattern`)")
    pattern: str | None = Field(None, description="regular expression of topic names to consume")
    group_id: str = Field(description="consumer group; instances with one group_id share the partitions")
    group_instance_id: str | None = Field(
        None, description="static group membership id: a restarted instance takes its partitions back "
                          "without a rebalance (one distinct id per instance)")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group without a committed offset starts")
    codec: CodecName = Field("json", description="how message values are decoded (json, lines, raw …)")
    batch_size: int = Field(2000, ge=1, description="most messages per batch (a poll's records of a partition are "
                            "cut into batches of this size)")
    poll_timeout_ms: int = Field(500, ge=1, description="how long one poll waits for messages")
    fetch_max_wait_ms: int = Field(100, ge=0, description="how long the broker may hold a fetch to fill it")
    fetch_max_bytes: int = Field(16 * 2**20, ge=1024, description="most bytes one fetch response carries")
    max_partition_fetch_bytes: int = Field(
        2**20, ge=1024, description="most bytes fetched per partition at once; with the assigned "
                                    "partitions this bounds the client's prefetch buffer")
    session_timeout_ms: int = Field(10_000, ge=1000, description="group session timeout")
    heartbeat_interval_ms: int = Field(3000, ge=100, description="group heartbeat interval")
    max_poll_interval_ms: int = Field(300_000, ge=1000, description="longest pause between polls before "
                                                                    "the member leaves the group")
    rebalance_timeout_ms: int = Field(60_000, ge=1000, description="how long a rebalance waits for members")
    revoke_timeout: float = Field(
        20.0, gt=0, description="seconds a revoked partition's in-flight events may take to drain before "
                                "its watermark is committed and it is given up")
    isolation_level: Literal["read_uncommitted", "read_committed"] = Field(
        "read_uncommitted", description="read_committed skips aborted transactional messages")
    connect_timeout: float = Field(60.0, gt=0, description="seconds to keep retrying the first connection")
    metadata_max_age_ms: int = Field(
        300_000, ge=100, description="how often topic metadata is refreshed: how soon a topic created after "
                                     "the source started, new partitions or `pattern` matches are consumed")

    @field_validator("topics", mode="before")
    @classmethod
    def _one_topic(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _topics_or_pattern(self) -> KafkaSourceConfig:
        if bool(self.topics) == bool(self.pattern):
            raise ValueError("give exactly one of `topics` (a non-empty list) or `pattern`")
        if self.revoke_timeout * 1000 >= self.rebalance_timeout_ms:
            raise ValueError("revoke_timeout must be shorter than rebalance_timeout_ms")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be shorter than session_timeout_ms")
        return self

    def consumer_options(self, default_client_id: str) -> dict[str, Any]:
        """Keyword arguments for `AIOKafkaConsumer`: connection, security and group keys, no auto-commit."""
        return self.client_options(
            default_client_id, "group_id", "group_instance_id", "auto_offset_reset", "fetch_max_wait_ms",
            "fetch_max_bytes", "max_partition_fetch_bytes", "session_timeout_ms", "heartbeat_interval_ms",
            "max_poll_interval_ms", "rebalance_timeout_ms", "isolation_level", "metadata_max_age_ms",
            enable_auto_commit=False)
