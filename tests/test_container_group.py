"""Three streamflow containers in one consumer group against a real Kafka broker.

The containers run the pipeline of docker/k8s/configmap.yaml, hardened as the
Deployment runs them, on the host's network (the session's broker listens on
127.0.0.1). Through a kill, a restart, scaling to 4 and back to 2 and the final
`podman stop`s, every input event reaches the output topic at least once and the
group's committed offsets reach the input's end. Every member's /metrics is
scraped, and its JSON log says which partitions it owns. The figures are
printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_harness import DOCKER, Container, Containers, http_get, podman
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]  # the first test may build the images

PARTITIONS = 6
PHASE = 1000  # events produced per phase


@pytest.fixture
def containers() -> Iterator[Containers]:
    made = Containers()
    yield made
    made.remove_all()


def scrape(c: Container) -> dict[str, float]:
    """What a consumer's /metrics says: events its source read, and whether it serves."""
    status, text = http_get(c.url("/metrics"))
    assert status == 200, f"{c.name} /metrics: {status} {text[:200]}"
    out = {"read": 0.0, "up": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamflow_events_out_total" and sample.labels.get("kind") == "source":
                out["read"] += sample.value
            elif sample.name == "streamflow_up":
                out["up"] = sample.value
    return out


def assigned_partitions(c: Container) -> set[int]:
    """The input partitions of the consumer's latest assignment (its JSON log)."""
    assigned = [line["message"] for line in c.log_lines() if ": assigned " in line.get("message", "")]
    assert assigned, f"{c.name} was never assigned partitions:\n{c.logs()[-2000:]}"
    return {int(p) for p in re.findall(r"\[(\d+)\]", assigned[-1])}


class Group:
    """The consumer containers of one group, and the topics they read and write."""

    def __init__(self, kafka, containers: Containers, pipeline: Path, topics: dict[str, str]) -> None:
        self.kafka, self.containers, self.pipeline, self.topics = kafka, containers, pipeline, topics
        self.members: dict[str, Container] = {}
        self.produced = 0

    def start(self, name: str) -> Container:
        env = {"KAFKA_BOOTSTRAP": self.kafka.bootstrap, "GROUP_ID": self.topics["group"],
               "ORDERS_TOPIC": self.topics["in"], "CLEAN_TOPIC": self.topics["out"],
               "DEAD_LETTER_TOPIC": self.topics["dlq"]}
        args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        c = self.containers.run(name, *args, "-v", f"{self.pipeline}:/etc/streamflow/pipeline.yaml:ro",
                                network_host=True)
        self.members[name] = c
        return c

    async def produce(self) -> range:
        """The next PHASE events (ids continue), spread over every partition."""
        ids = range(self.produced, self.produced + PHASE)
        await self.kafka.produce(self.topics["in"], [
            {"key": f"c{i % 10}", "partition": i % PARTITIONS,
             "value": {"id": i, "type": "order", "customer": f"c{i % 10}", "product_id": "p1", "quantity": 1}}
            for i in ids])
        self.produced += PHASE
        return ids

    def assert_partitions_shared(self, names: list[str]) -> dict[str, set[int]]:
        """Every running member serves /metrics and owns a partition; together all, none twice."""
        for n in names:
            assert scrape(self.members[n])["up"] == 1.0
        owned = {n: assigned_partitions(self.members[n]) for n in names}
        assert all(owned.values()), owned
        assert sorted(p for parts in owned.values() for p in parts) == list(range(PARTITIONS)), owned
        return owned


async def test_three_consumers_share_take_over_scale_and_drain(kafka, containers: Containers,
                                                               tmp_path: Path) -> None:
    [configmap] = YAML(typ="safe").load_all((DOCKER / "k8s/configmap.yaml").read_text())
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(configmap["data"]["pipeline.yaml"])
    topics = {"in": await kafka.topic("orders", PARTITIONS), "out": await kafka.topic("clean", PARTITIONS),
              "dlq": await kafka.topic("dlq", 1)}
    topics["group"] = f"group-{topics['in']}"
    group = Group(kafka, containers, pipeline, topics)
    tail = await kafka.tail(topics["out"])
    seen: Counter[int] = Counter()

    async def arrived(ids: range, what: str, timeout: float = 120.0) -> float:
        started = time.monotonic()
        while not all(seen[i] for i in ids):
            if time.monotonic() - started > timeout:
                missing = [i for i in ids if not seen[i]]
                logs = "\n".join(c.logs()[-1500:] for c in group.members.values())
                raise AssertionError(f"{what}: {len(missing)} events missing, e.g. {missing[:5]}\n{logs}")
            before = len(tail.records)
            await tail.poll()
            seen.update(json.loads(r.value)["id"] for r in tail.records[before:])
        return time.monotonic() - started

    try:
        for name in ("c0", "c1", "c2"):
            group.start(name)
        for c in group.members.values():
            await asyncio.to_thread(c.wait_ready)
        await arrived(await group.produce(), "three consumers")
        three = group.assert_partitions_shared(["c0", "c1", "c2"])

        # a crash: SIGKILL, nothing drained; the others take over its partitions
        podman("kill", group.members["c0"].name)
        takeover = await arrived(await group.produce(), "after c0 was killed")
        group.assert_partitions_shared(["c1", "c2"])

        # c0 restarts and rejoins, c3 scales the group to 4
        podman("start", group.members["c0"].name)
        group.start("c3")
        for name in ("c0", "c3"):
            await asyncio.to_thread(group.members[name].wait_ready)
        await arrived(await group.produce(), "four consumers")
        four = group.assert_partitions_shared(["c0", "c1", "c2", "c3"])
        reads = {name: scrape(c)["read"] for name, c in group.members.items()}
        assert all(reads.values()), reads  # every member read some of this phase's events

        # scale down to 2: SIGTERM drains and commits, exit 0
        exits = {name: group.members[name].stop() for name in ("c2", "c3")}
        await arrived(await group.produce(), "two consumers")
        two = group.assert_partitions_shared(["c0", "c1"])
        exits.update({name: group.members[name].stop() for name in ("c0", "c1")})
    finally:
        await tail.stop()

    assert {name: code for name, (code, _) in exits.items()} == dict.fromkeys(exits, 0), exits
    assert all(seconds < 45 for _, seconds in exits.values()), exits
    ends = await kafka.end_offsets(topics["in"])
    committed = await kafka.committed(topics["group"], topics["in"])
    assert committed == ends  # the drains committed everything they wrote
    duplicates = sum(n - 1 for n in seen.values())
    assert set(seen) == set(range(group.produced))  # at least once: every event, nothing else
    print(f"\n[containers] events in {group.produced}, out {sum(seen.values())}, duplicates {duplicates}; "
          f"takeover after kill {takeover:.1f}s; partitions 3={three} 4={four} 2={two}; "
          f"read by each of the 4 (metrics) {reads}; "
          f"stops {', '.join(f'{n}: exit {c} in {s:.1f}s' for n, (c, s) in exits.items())}")
