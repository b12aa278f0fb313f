"""A changelog topic made to fit: created compacted if missing, else checked for its partitions and policy."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ..connectors.kafka._aiokafka import Admin

log = logging.getLogger("streamflow.state")

#: Kafka error codes a topic check expects.
_TOPIC_ALREADY_EXISTS = 36


class ChangelogError(RuntimeError):
    """The changelog cannot hold the state: wrong partition count or cleanup policy, foreign records."""


async def ensure_compacted_topic(admin: Admin, name: str, partitions: int,
                                 replication_factor: int | None = None, timeout: float = 30.0) -> None:
    """Create topic ``name`` with ``partitions`` and ``cleanup.policy=compact`` unless it exists; check it.

    ``replication_factor`` None means 3, or the number of brokers when there are fewer.
    Another instance creating it at the same time is fine; an existing topic
    with another partition count, or that is not compacted, is a `ChangelogError`.
    """
    if not await _exists(admin, name):
        if replication_factor is None:
            cluster: dict[str, Any] = await admin.describe_cluster()
            replication_factor = max(1, min(3, len(cluster.get("brokers") or ())))
        topic = NewTopic(name, partitions, replication_factor, topic_configs={"cleanup.policy": "compact"})
        response = await admin.create_topics([topic])
        for entry in response.topic_errors:
            code = entry[1]
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                message = entry[2] if len(entry) > 2 else ""
                raise ChangelogError(f"cannot create changelog topic {name!r}: Kafka error {code} {message}")
        log.info("created changelog topic %s (%d partitions, compacted)", name, partitions)
    have = await _partition_count(admin, name, timeout)
    if have != partitions:
        raise ChangelogError(
            f"changelog topic {name!r} has {have} partitions but the input has {partitions}: state is "
            f"partitioned like its input, so they must match (delete the changelog topic to rebuild the "
            f"state from the input, or give the input {have} partitions)")
    policy = await _cleanup_policy(admin, name)
    if "compact" not in policy.split(","):
        raise ChangelogError(f"changelog topic {name!r} has cleanup.policy={policy}: it must be compacted "
                            "(cleanup.policy=compact), or old state is deleted by retention")


async def _exists(admin: Admin, name: str) -> bool:
    # list_topics asks for every topic's metadata: unlike asking for ``name`` it never auto-creates it
    topics: list[str] = await admin.list_topics()
    return name in topics


async def _partition_count(admin: Admin, name: str, timeout: float) -> int:
    """Partitions of ``name`` once each has a leader (a new topic takes a moment)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics([name])
        meta = described[0] if described else {}
        parts = meta.get("partitions") or []
        if meta.get("error_code") == 0 and parts and all(p.get("leader", -1) >= 0 for p in parts):
            return len(parts)
        if loop.time() > deadline:
            raise ChangelogError(f"changelog topic {name!r} has no leaders after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def _cleanup_policy(admin: Admin, name: str) -> str:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                             {"cleanup.policy": None})])
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "cleanup.policy":
                    return str(entry[1])
    return "delete"  # Kafka's default
