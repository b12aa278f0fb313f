"""Fixtures for the tests marked ``kafka``: a real Apache Kafka broker and helpers to use it.

One broker (tests/kafka/broker.py: KRaft, single node, 127.0.0.1) is started
for the whole session, on first use; with ``STREAMFLOW_TEST_BOOTSTRAP`` set the
tests use that broker instead. Tests that must stop the broker get their own
(`own_kafka`). Every helper is bounded in time: a test waiting for data that
never comes fails with what it saw, it does not hang.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info < (3, 12) and hasattr(traceback, "_extract_caret_anchors_from_line_segment"):
    # Python 3.11 draws a traceback's ^~~~ carets with ast.parse. When the garbage collector logs an
    # asyncio future's unretrieved exception while pytest itself is inside ast.parse (rewriting a
    # module, or showing a failure), the nested parse breaks the interpreter's AST recursion count:
    # "SystemError: AST constructor recursion depth mismatch" ends the whole run (python/cpython#106905,
    # pytest-dev/pytest#10874). Tracebacks in this test process go without the carets.
    traceback._extract_caret_anchors_from_line_segment = lambda segment: None  # type: ignore[attr-defined]


def _load_harness() -> Any:
    """tests/kafka/broker.py, imported by path (``tests`` is not a package)."""
    spec = importlib.util.spec_from_file_location("streamflow_kafka_harness", ROOT / "tests/kafka/broker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


class KafkaEnv:
    """A reachable broker plus the test-side client helpers (aiokafka) every Kafka test uses."""

    def __init__(self, bootstrap: str, broker: Any = None) -> None:
        self.bootstrap = bootstrap
        self.broker = broker

    # -- topics ------------------------------------------------------------------
    async def topic(self, hint: str = "t", partitions: int = 3) -> str:
        """Create a fresh topic with a unique name and wait until it has leaders."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        name = f"{hint}-{uuid.uuid4().hex[:10]}"
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()
        await self._wait_leaders(name, partitions)
        return name

    async def _wait_leaders(self, topic: str, partitions: int, timeout: float = 30.0) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
                    if len(ends) == partitions:
                        return
                except Exception:  # noqa: BLE001 - leaders not elected yet
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"topic {topic} has no leaders after {timeout}s")
                await asyncio.sleep(0.1)
        finally:
            await consumer.stop()

    # -- producing -----------------------------------------------------------------
    async def producer(self) -> Any:
        """A started aiokafka producer (``acks=all``); stop it when done."""
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                    max_batch_size=256 * 1024, request_timeout_ms=60_000)
        await producer.start()
        return producer

    async def produce(self, topic: str, records: Iterable[tuple[Any, Any, Any] | dict[str, Any]],
                      producer: Any = None) -> None:
        """Write records and wait until the broker has all of them.

        A record is ``(key, value, partition)`` (value: bytes, or anything JSON) or
        a dict with keys ``key``, ``value``, ``partition``, ``headers``.
        """
        import orjson

        own = producer is None
        if own:
            producer = await self.producer()
        try:
            futures = []
            for rec in records:
                if isinstance(rec, dict):
                    key, value, partition = rec.get("key"), rec.get("value"), rec.get("partition")
                    headers = rec.get("headers")
                else:
                    (key, value, partition), headers = rec, None
                if not isinstance(value, bytes):
                    value = orjson.dumps(value)
                if isinstance(key, str):
                    key = key.encode()
                futures.append(await producer.send(topic, value, key=key, partition=partition,
                                                   headers=headers))
            await asyncio.gather(*futures)
        finally:
            if own:
                await producer.stop()

    # -- consuming -------------------------------------------------------------------
    async def tail(self, topic: str) -> Tail:
        """A reader of ``topic`` from the beginning that keeps what it read (`Tail.until`)."""
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        return Tail(topic, consumer)

    async def consume(self, topic: str, done: Callable[[list[Any]], bool], timeout: float = 60.0,
                      what: str = "") -> list[Any]:
        """Read ``topic`` from the beginning until ``done(records)`` or ``timeout`` (then fail)."""
        tail = await self.tail(topic)
        try:
            return await tail.until(done, timeout, what)
        finally:
            await tail.stop()

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Partition -> end offset (messages written so far, duplicates included)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return {tp.partition: off for tp, off in ends.items()}
        finally:
            await consumer.stop()

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """Partition -> committed offset of ``group`` (partitions without a commit left out)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items()
                if tp.topic == topic and meta.offset >= 0}

    async def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60.0,
                       interval: float = 0.2) -> Any:
        """Poll the (async) ``check`` until it returns something truthy; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
            await asyncio.sleep(interval)


class Tail:
    """Everything read so far from one topic (``records``), read on demand."""

    def __init__(self, topic: str, consumer: Any) -> None:
        self.topic = topic
        self.consumer = consumer
        self.records: list[Any] = []

    async def poll(self, timeout_ms: int = 200) -> list[Any]:
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=20_000)
        for recs in batch.values():
            self.records.extend(recs)
        return self.records

    async def until(self, done: Callable[[list[Any]], bool], timeout: float = 60.0, what: str = "") -> list[Any]:
        """Read until ``done(records)``; fail after ``timeout`` seconds with what was read."""
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or self.topic}: condition not met within {timeout}s "
                                     f"({len(self.records)} records read)")
            await self.poll()
        return self.records

    async def stop(self) -> None:
        await self.consumer.stop()


def _start_broker(**options: Any) -> Any:
    broker = harness.KafkaBroker(**options)
    try:
        broker.start()
    except BaseException:
        broker.close()
        raise
    return broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaEnv]:
    """The session's broker: ``$STREAMFLOW_TEST_BOOTSTRAP``, or one started for the session."""
    external = harness.external_bootstrap()
    if external:
        yield KafkaEnv(external)
        return
    broker = _start_broker()
    print(f"\n[kafka] broker {broker.bootstrap} started in {broker.last_start_seconds:.1f}s", file=sys.stderr)
    try:
        yield KafkaEnv(broker.bootstrap, broker)
    finally:
        broker.close()


@pytest.fixture
def kafka(kafka_broker: KafkaEnv) -> KafkaEnv:
    """The shared broker (tests use unique topic and group names, so they do not interfere)."""
    return kafka_broker


@pytest.fixture
def own_kafka() -> Iterator[KafkaEnv]:
    """A broker of this test alone, for tests that stop or restart it."""
    if harness.external_bootstrap():
        pytest.skip("needs a broker it can restart; STREAMFLOW_TEST_BOOTSTRAP points at an external one")
    broker = _start_broker()
    try:
        yield KafkaEnv(broker.bootstrap, broker)
    finally:
        broker.close()


JAAS_PLAIN = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')
JAAS_SCRAM = 'org.apache.kafka.common.security.scram.ScramLoginModule required;'


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[tuple[KafkaEnv, str]]:
    """A broker with a PLAINTEXT listener (for admin) and a SASL_PLAINTEXT one: PLAIN (alice/alice-secret)
    and SCRAM-SHA-256 (bob/bob-secret). Yields (admin env, SASL bootstrap)."""
    if harness.external_bootstrap():
        pytest.skip("needs its own SASL broker; STREAMFLOW_TEST_BOOTSTRAP points at an external one")
    host = "127.0.0.1"
    port, controller, sasl = harness._free_port(host), harness._free_port(host), harness._free_port(host)
    broker = harness.KafkaBroker(port=port, controller_port=controller, config={
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller},SASL_PLAINTEXT://{host}:{sasl}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port},SASL_PLAINTEXT://{host}:{sasl}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS_PLAIN,
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": JAAS_SCRAM,
    })
    broker.start()
    try:
        broker.run_tool("kafka.admin.ConfigCommand", "--bootstrap-server", broker.bootstrap, "--alter",
                        "--add-config", "SCRAM-SHA-256=[iterations=4096,password=bob-secret]",
                        "--entity-type", "users", "--entity-name", "bob")
        yield KafkaEnv(broker.bootstrap, broker), f"{host}:{sasl}"
    finally:
        broker.close()


class PipelineProcess:
    """``streamflow run`` in a subprocess, its output in a log file (printed when a test fails)."""

    def __init__(self, target: Path, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.target, self.cwd, self.env, self.log = target, cwd, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def since_start(self) -> str:
        """What the current (last) start has logged so far."""
        return self.log.read_text(errors="replace").rsplit(f"===== start {self.starts} =====", 1)[-1]

    def start(self, **env: str) -> PipelineProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        full_env = {**os.environ, **self.env, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.cwd), str(ROOT),
                                                             full_env.get("PYTHONPATH", "")) if p)
        with open(self.log, "ab") as fh:
            fh.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamflow.cli", "run", "--quiet", "--log-level", "INFO",
                 str(self.target)],
                cwd=self.cwd, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing runs after it."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(30)

    async def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"pipeline did not exit within {timeout}s\n{self.tail()}")
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@pytest.fixture
def pipeline_process(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., PipelineProcess]]:
    """Factory of `PipelineProcess`es; every one still running at teardown is killed."""
    made: list[PipelineProcess] = []

    def make(target: Path, name: str = "pipeline", cwd: Path | None = None, **env: str) -> PipelineProcess:
        p = PipelineProcess(target, cwd or target.parent, dict(env), tmp_path / f"{name}.log")
        made.append(p)
        return p

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for p in made:
        if p.running:
            p.signal(signal.SIGKILL)
            assert p.proc is not None
            p.proc.wait(30)
        if failed:
            print(f"----- {p.log.name} -----\n{p.tail(120)}", file=sys.stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
