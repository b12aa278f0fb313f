"""state-restore: how fast a keyed state store is rebuilt from its Kafka changelog (target ≥ 100k keys/s).

The changelog topic (3 partitions, compacted) holds 1M keys written exactly as
`streamflow.state.changelog.Changelog.flush` writes them — key ``0x01`` + the
store key, the value, the source partition/offset headers — plus each
partition's applied marker: what a member finds after compaction when it is
assigned the partitions. It is produced once per broker and reused.

Each run is a fresh interpreter that starts a `Changelog` and restores the
three partitions one after the other into fresh stores, as `KeyedState` does
on assignment (``memory``: a dict; ``disk``: RocksDB through rocksdict). Only
the restore is timed. The child then reads every key back and returns the
count and a checksum of the (key, value) pairs, which the parent compares
with the ones the input was made from.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from .harness import Stopwatch, Workload

PARTITIONS = 3
#: Bump when the record shape changes: cached changelog topics are keyed by it.
VERSION = 1


def state_key(i: int) -> bytes:
    return b"user-%08d" % i


def state_value(i: int) -> bytes:
    """A count and a last-seen time as orjson writes them (~40 bytes)."""
    return b'{"count":%d,"last":%d}' % (i % 977, 1_700_000_000_000 + i)


def expected_checksum(n: int) -> int:
    crc = 0
    for i in range(n):
        crc ^= zlib.crc32(state_value(i), zlib.crc32(state_key(i)))
    return crc


class StateRestore(Workload):
    name = "state-restore"
    variants = ("memory", "disk")
    baselines = ("memory",)
    streamflow_variants = frozenset({"memory", "disk"})
    default_n = 1_000_000
    smoke_n = 3000
    timeout = 300.0
    needs_kafka: ClassVar[bool] = True

    def unavailable(self, variant: str) -> str | None:
        from .harness import module_available

        return module_available("rocksdict") if variant == "disk" else None

    def prepare(self) -> None:
        assert self.opts.bootstrap, "state-restore needs a broker"
        self.topic = f"sf-bench-changelog-v{VERSION}-{self.n}"
        asyncio.run(ensure_changelog(self.opts.bootstrap, self.topic, self.n))
        self.checksum = expected_checksum(self.n)

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        return {"n": self.n, "bootstrap": self.opts.bootstrap, "topic": self.topic, "backend": variant}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        if result["keys"] != params["n"] or result["checksum"] != self.checksum:
            return f"restored {result['keys']} keys (checksum {result['checksum']}), expected {params['n']}"
        result["note"] = f"{result['records']:,} records in {result['seconds']:.2f}s"
        return None

    def summary(self, outcomes: list[Any]) -> list[str]:
        return [f"state-restore/{o.variant}: {o.median:,.0f} keys/s "
                f"(target >= 100,000: {'met' if o.median >= 100_000 else 'NOT met'})"
                for o in outcomes if o.ok]

    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        from streamflow.core.tuning import new_event_loop

        with asyncio.Runner(loop_factory=new_event_loop) as loop:
            return loop.run(restore_all(params))


async def restore_all(params: dict[str, Any]) -> dict[str, Any]:
    """Restore every partition of the changelog into fresh stores of ``backend``; time the restore only."""
    from streamflow.connectors.kafka.security import KafkaConnection
    from streamflow.state import open_store
    from streamflow.state.changelog import Changelog

    changelog = Changelog(KafkaConnection(bootstrap_servers=params["bootstrap"]), params["topic"], PARTITIONS)
    await changelog.start()
    stores, records = [], 0
    with tempfile.TemporaryDirectory(prefix="sf-restore-") as tmp:
        try:
            with Stopwatch() as sw:
                for p in range(PARTITIONS):
                    store = open_store(params["backend"], Path(tmp) / str(p), "state", p)
                    records += (await changelog.restore(store)).records
                    stores.append(store)
            keys, crc = 0, 0
            for store in stores:
                for k, v in store.items():
                    keys += 1
                    crc ^= zlib.crc32(v, zlib.crc32(k))
        finally:
            for store in stores:
                store.close()
            await changelog.stop()
    return sw.result(keys, keys=keys, checksum=crc, records=records)


async def ensure_changelog(bootstrap: str, topic: str, n: int) -> None:
    """The changelog topic with keys 0..n-1 (key i on partition i % 3) and the applied markers."""
    from streamflow.state.changelog import APPLIED_KEY, CHANGE_PREFIX, SOURCE_OFFSET, SOURCE_PARTITION

    from .kafka_enrich import Record, write_once

    def records() -> Iterator[Record]:
        for p in range(PARTITIONS):
            source = (SOURCE_PARTITION, str(p).encode())
            for i in range(p, n, PARTITIONS):
                yield p, CHANGE_PREFIX + state_key(i), state_value(i), [source, (SOURCE_OFFSET, b"%d" % i)]
            yield p, APPLIED_KEY, b"%d" % n, []

    started = time.monotonic()
    await write_once(bootstrap, topic, n + PARTITIONS, records, create_compacted_topic)
    print(f"  changelog {topic}: {n:,} keys in {time.monotonic() - started:.1f}s", flush=True)


async def create_compacted_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
