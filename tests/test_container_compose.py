"""docker/compose.yaml run for real with podman-compose: Kafka, the sample producer, three consumers.

The services talk by service name (`kafka:9092`) on the project's network; the
test reaches the broker through its port published on 127.0.0.1 and each
consumer through its own published :8080. Every event the sample producer
wrote reaches the enriched or the dead-letter topic (or is a `view` the
pipeline filters) at least once; a killed consumer's partitions are taken
over, it rejoins, the group scales to 4 and back to 2, and every `podman stop`
drains to exit 0 with the group's offsets committed to the end. Prometheus is
left out: its image comes from a registry (the test scrapes every /metrics).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from podman_harness import DOCKER, Container, free_port, http_get, image, kafka_image, podman, podman_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]  # the first test may build the images

SAMPLE_EVENTS = 3000
EXTRA = 600  # events the test adds per phase
GROUP = "kafka-enrich"  # GROUP_ID in compose.yaml
COMPOSE = [str(Path(sys.executable).parent / "podman-compose")]


class Project:
    """One podman-compose project of docker/compose.yaml, with its own name and host port."""

    def __init__(self) -> None:
        self.name = f"sf{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.env = {**podman_env(), "KAFKA_IMAGE": kafka_image(), "STREAMFLOW_IMAGE": image(),
                    "KAFKA_HOST_PORT": str(self.port), "SAMPLE_EVENTS": str(SAMPLE_EVENTS), "SAMPLE_RATE": "2000"}

    def __call__(self, *args: str, timeout: float = 300) -> str:
        r = subprocess.run([*COMPOSE, "-p", self.name, "-f", str(DOCKER / "compose.yaml"), *args],
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"podman-compose {' '.join(args)}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    def containers(self, service: str) -> list[Container]:
        """The service's containers (running or not), with their published :8080 where they have one."""
        out = podman("ps", "-a", "--format", "json", "--filter", f"label=io.podman.compose.project={self.name}",
                     "--filter", f"label=com.docker.compose.service={service}").stdout
        made = []
        for c in sorted(json.loads(out or "[]"), key=lambda c: c["Names"][0]):
            ports = [p["host_port"] for p in c.get("Ports") or [] if p.get("container_port") == 8080]
            made.append(Container(c["Names"][0], ports[0] if ports else 0))
        return made

    def logs(self) -> str:
        r = subprocess.run([*COMPOSE, "-p", self.name, "-f", str(DOCKER / "compose.yaml"), "logs"],
                           env=self.env, capture_output=True, text=True, timeout=60)
        return (r.stdout + r.stderr)[-6000:]


@pytest.fixture
def project() -> Iterator[Project]:
    p = Project()
    try:
        yield p
    finally:  # `down` knows only the first replica of a scaled service: the rest by label
        ids = podman("ps", "-aq", "--filter", f"label=io.podman.compose.project={p.name}").stdout.split()
        if ids:
            podman("rm", "-f", "-t", "0", *ids, check=False)
        subprocess.run([*COMPOSE, "-p", p.name, "-f", str(DOCKER / "compose.yaml"), "down", "-v", "-t", "0"],
                       env=p.env, capture_output=True, timeout=300)


async def read_topic(bootstrap: str, topic: str, done: Callable[[list[Any]], bool], what: str,
                     timeout: float = 180.0) -> list[Any]:
    """Every record of ``topic`` from the start, until ``done(records)``; fails after ``timeout``."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not complete within {timeout}s ({len(records)} records)")
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def expected(inputs: list[Any]) -> tuple[set[int], set[bytes]]:
    """(ids that must be enriched, values that must be dead-lettered) of the input records.

    As pipelines/kafka_enrich.yaml treats them: bad JSON and unknown products are
    dead-lettered, events other than orders are filtered out.
    """
    enriched, dead = set(), set()
    for r in inputs:
        try:
            event = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            dead.add(r.value)
            continue
        if event.get("type") != "order":
            continue
        if event["product_id"] == "p9":
            dead.add(r.value)
        else:
            enriched.add(event["id"])
    return enriched, dead


async def wait_until(what: str, check: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.5)


def exited(c: Container) -> bool:
    return c.inspect("{{.State.Status}}") == "exited" and c.inspect("{{.State.ExitCode}}") == "0"


async def produce(bootstrap: str, ids: range) -> None:
    """Orders for known products, one per id, from the host."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sends = [await producer.send("orders", orjson.dumps({
            "id": i, "type": "order", "customer": f"c{i % 10}", "product_id": "p1", "quantity": 1}),
            key=f"c{i % 10}".encode()) for i in ids]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def test_compose_file_runs_kafka_producer_and_a_consumer_group(project: Project) -> None:
    started = time.monotonic()
    # In steps, each `--no-deps`: podman 4.3 cannot start the producer with the
    # dependencies podman-compose gives it, and ignores `condition: service_healthy`.
    project("up", "-d", "--no-build", "kafka", "topics")  # topics retries until kafka answers
    [topics] = project.containers("topics")
    await wait_until("the topics to be created", lambda: exited(topics))
    project("up", "-d", "--no-build", "--no-deps", "--scale", "streamflow=3", "streamflow")
    consumers = project.containers("streamflow")
    assert len(consumers) == 3 and all(c.port for c in consumers)
    for c in consumers:
        await asyncio.to_thread(c.wait_ready)
    ready = time.monotonic() - started
    project("up", "-d", "--no-build", "--no-deps", "producer")
    [producer] = project.containers("producer")
    await wait_until("the sample producer to finish", lambda: exited(producer))

    inputs = await read_topic(project.bootstrap, "orders", lambda rs: len(rs) >= SAMPLE_EVENTS, "input")
    want, want_dead = expected(inputs)
    seen: Counter[int] = Counter()

    async def arrived(ids: set[int], what: str) -> float:
        t0 = time.monotonic()
        records = await read_topic(project.bootstrap, "orders-enriched",
                                   lambda rs: ids <= {orjson.loads(r.value)["id"] for r in rs}, what)
        seen.clear()
        seen.update(orjson.loads(r.value)["id"] for r in records)
        return time.monotonic() - t0

    try:
        await arrived(want, "the sample events, enriched")
        dead = await read_topic(project.bootstrap, "orders-dead-letter",
                                lambda rs: want_dead <= {r.value for r in rs}, "dead letters")
        first = time.monotonic() - started
        reads = [scrape_read(c) for c in consumers]
        assert sum(reads) >= SAMPLE_EVENTS, reads

        podman("kill", consumers[0].name)  # a crash: its partitions go to the other two
        await produce(project.bootstrap, ids := range(1_000_000, 1_000_000 + EXTRA))
        takeover = await arrived(want | set(ids), "events after a consumer was killed")

        podman("start", consumers[0].name)  # it rejoins; a fourth consumer joins
        project("up", "-d", "--no-build", "--no-deps", "--scale", "streamflow=4", "streamflow")
        consumers = project.containers("streamflow")
        assert len(consumers) == 4
        for c in consumers:
            await asyncio.to_thread(c.wait_ready)
        await produce(project.bootstrap, more := range(2_000_000, 2_000_000 + EXTRA))
        await arrived(want | set(ids) | set(more), "events with four consumers")

        stops = [c.stop() for c in consumers[2:]]  # back to two: SIGTERM, drain, commit
        await produce(project.bootstrap, last := range(3_000_000, 3_000_000 + EXTRA))
        await arrived(want | set(ids) | set(more) | set(last), "events with two consumers")
        stops += [c.stop() for c in consumers[:2]]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{project.logs()}") from exc

    assert [code for code, _ in stops] == [0] * 4, stops
    total = len(want) + 3 * EXTRA
    duplicates = sum(n - 1 for n in seen.values())
    committed, ends = await group_offsets(project.bootstrap)
    assert committed == ends
    print(f"\n[compose] sample events {len(inputs)}: {len(want)} orders enriched, {len(want_dead)} dead-lettered "
          f"({len(dead)} records), the rest views; with the test's {3 * EXTRA}: {total} expected, "
          f"{sum(seen.values())} out, {duplicates} duplicates; from `up` to 3 consumers ready {ready:.1f}s, "
          f"to all sample events out {first:.1f}s; "
          f"takeover after kill {takeover:.1f}s; source reads per consumer {reads}; "
          f"stops {[f'exit {c} in {s:.1f}s' for c, s in stops]}")


def scrape_read(c: Container) -> float:
    """Events the consumer's source read, from its /metrics (which must answer)."""
    status, text = http_get(c.url("/metrics"))
    assert status == 200, (c.name, status)
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("streamflow_events_out_total{") and 'kind="source"' in line)


async def group_offsets(bootstrap: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offsets of the consumers' group, end offsets) of the `orders` topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition("orders", p) for p in range(6)])
    finally:
        await consumer.stop()
    return ({tp.partition: m.offset for tp, m in offsets.items() if tp.topic == "orders"},
            {tp.partition: o for tp, o in ends.items()})
