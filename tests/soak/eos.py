"""Exactly-once soak: a stateful Kafka -> Kafka pipeline under faults, checked by a ``read_committed`` verifier.

Modelled on Apache Kafka's ``tests/kafkatest/tests/core/transactions_test.py``
(transactional copiers bounced hard and clean, a read_committed consumer then
checks input = output with no duplicates) and Flink's per-key sequence checks.

The input is ``events`` JSON events over ``keys`` keys, each key's events
numbered 0, 1, 2, … (``seq``). The pipeline (``delivery: exactly_once``) keeps a
running total per key in keyed state (``map`` with ``state: {total: value}``),
writes ``{key, seq, amount, total}`` keyed by ``key``, and dead-letters every
``BAD_EVERY``-th event. While it runs, the harness injects each fault kind
``faults`` times, spaced over the input:

* ``kill9`` — SIGKILL the pipeline and start it again;
* ``sigterm`` — SIGTERM it (it must exit 0) and start it again;
* ``broker`` — restart the broker under it (a pipeline that fails meanwhile is restarted);
* ``join`` — a second instance joins the group, works, and leaves (SIGTERM).

Then the verifier reads the output and dead-letter topics ``read_committed`` and
counts: missing and duplicated events, per-key order violations, totals that
differ from the ones computed from the input, and partitions whose last stable
offset is below their end (a transaction left open).

Long form (prints the figures; starts its own broker)::

    python -m tests.soak.eos --events 1000000 --faults 10

The test suite runs a short form (`tests/test_eos_soak.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamflow.dev.kafka import KafkaBroker

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("kill9", "sigterm", "broker", "join")
PARTITIONS = 4
BAD_EVERY = 997

FUNCTIONS = '''
def running_total(value, state):
    if value.get("bad"):
        raise ValueError(f"bad event {value['key']}#{value['seq']}")
    total = state.total.get(0) + value["amount"]
    state.total.set(total)
    return {**value, "total": total}
'''


def event(i: int, keys: int) -> dict[str, Any]:
    """Input ``i``: key ``k<i % keys>``, its ``seq``-th event; every `BAD_EVERY`-th one is bad."""
    out: dict[str, Any] = {"key": f"k{i % keys}", "seq": i // keys, "amount": (i * 31) % 17 - 5}
    if i % BAD_EVERY == BAD_EVERY - 1:
        out["bad"] = True
    return out


def pipeline_yaml(name: str, commit_interval: float) -> dict[str, Any]:
    kafka = {"type": "kafka", "bootstrap_servers": "${KAFKA_BOOTSTRAP}"}
    return {
        "name": name,
        "settings": {"delivery": "exactly_once", "commit_interval": commit_interval, "shutdown_timeout": 30},
        "source": {**kafka, "topics": ["${IN_TOPIC}"], "group_id": "${GROUP}", "batch_size": 500,
                   "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "stages": [{"type": "map", "fn": "soakfns:running_total", "state": {"total": "value"},
                    "on_error": "dead_letter"}],
        "sink": {**kafka, "topic": "${OUT_TOPIC}", "key_field": "key"},
        "dead_letter": {**kafka, "topic": "${DLQ_TOPIC}"},
    }


class Instance:
    """One ``streamflow run`` of the soak pipeline, its output appended to a log file."""

    def __init__(self, path: Path, env: dict[str, str], log: Path) -> None:
        self.path, self.env, self.log = path, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.failures = 0  # exits other than 0 not caused by the harness (e.g. during a broker restart)

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, **self.env,
               "PYTHONPATH": os.pathsep.join([str(self.path.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])}
        with open(self.log, "ab") as fh:
            fh.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen([sys.executable, "-m", "streamflow.cli", "run", "--quiet", "--log-level",
                                          "INFO", str(self.path)], cwd=self.path.parent, env=env,
                                         stdout=fh, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.running:
            self.proc.kill()
            self.proc.wait(30)

    async def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"pipeline did not stop within {timeout}s\n{self.tail()}")
            await asyncio.sleep(0.1)
        return self.proc.returncode

    def revive(self) -> None:
        """Start again if it exited by itself (counted as a failure)."""
        if self.proc is not None and not self.running:
            if self.proc.returncode == 2:
                raise AssertionError(f"the soak pipeline's config is rejected\n{self.tail()}")
            self.failures += 1
            self.start()

    def said(self, text: str) -> bool:
        """Whether the current run logged ``text``."""
        try:
            log = self.log.read_text(errors="replace")
        except OSError:
            return False
        return text in log.rpartition(f"===== start {self.starts} =====")[2]

    def tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Figures:
    """What a soak run did and what the verifier found."""

    events: int = 0
    keys: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    outputs: int = 0
    dead_letters: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    wrong_totals: int = 0
    open_transactions: int = 0
    committed_behind: int = 0
    input_duplicates: int = 0  # events the input topic holds twice (the check is void then)
    starts: int = 0
    failures: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.out_of_order or self.wrong_totals
                    or self.open_transactions or self.committed_behind or self.input_duplicates)

    def report(self) -> str:
        faults = ", ".join(f"{k} x{self.faults[k]}" for k in KINDS)
        return (f"exactly-once soak: {self.events:,} events over {self.keys} keys in {self.seconds:.0f}s; "
                f"faults: {faults}; pipeline starts {self.starts} (failed by itself {self.failures})\n"
                f"  read_committed: {self.outputs:,} outputs + {self.dead_letters:,} dead letters; "
                f"missing {self.missing}, duplicates {self.duplicates}, out of order {self.out_of_order}, "
                f"wrong totals {self.wrong_totals}, open transactions {self.open_transactions}, "
                f"input not committed {self.committed_behind}, inputs written twice {self.input_duplicates}")


class Soak:
    """One soak run against the broker at ``bootstrap``; ``restart_broker`` restarts it (blocking)."""

    def __init__(self, bootstrap: str, restart_broker: Callable[[], None], workdir: Path, *, events: int,
                 faults: int, keys: int = 200, commit_interval: float = 0.5, kinds: tuple[str, ...] = KINDS,
                 rate: int = 0,
                 say: Callable[[str], None] = lambda _: None) -> None:
        self.bootstrap, self.restart_broker, self.workdir = bootstrap, restart_broker, workdir
        self.events, self.faults, self.keys = events, faults, keys
        self.commit_interval = commit_interval
        self.kinds = kinds
        #: Input events a second: spread over about 10 s per fault.
        self.rate = rate or max(100, events // max(1, 10 * faults * len(kinds)))
        self.say = say
        run = uuid.uuid4().hex[:8]
        self.name = f"eos-soak-{run}"
        self.topics = {"IN_TOPIC": f"soak-in-{run}", "OUT_TOPIC": f"soak-out-{run}", "DLQ_TOPIC": f"soak-dlq-{run}"}
        self.group = f"soak-{run}"
        self.figures = Figures(events=events, keys=keys)

    async def run(self) -> Figures:
        started = time.monotonic()
        await self._create_topics()
        path = self.workdir / "soak.yaml"
        (self.workdir / "soakfns.py").write_text(FUNCTIONS)
        path.write_text(json.dumps(pipeline_yaml(self.name, self.commit_interval), indent=2))
        env = {"KAFKA_BOOTSTRAP": self.bootstrap, "GROUP": self.group, **self.topics}
        main = Instance(path, env, self.workdir / "main.log")
        second = Instance(path, env, self.workdir / "second.log")
        main.start()
        try:
            await self._inject_faults(main, second)
            await self._until(lambda: self._consumed_all(), "every input committed", 600, main)
            assert await main.stop() == 0, main.tail()
        finally:
            main.kill()
            second.kill()
        self.figures.starts = main.starts + second.starts
        self.figures.failures = main.failures + second.failures
        await self._verify()
        self.figures.seconds = time.monotonic() - started
        return self.figures

    # -- faults -----------------------------------------------------------------------
    async def _inject_faults(self, main: Instance, second: Instance) -> None:
        """The input arrives at a steady ``rate`` while the faults strike, evenly spaced over it: each
        one once the pipeline (started again after the one before) has committed its share."""
        schedule = [kind for _ in range(self.faults) for kind in self.kinds]
        producing = asyncio.create_task(self._produce())
        try:
            for n, kind in enumerate(schedule, 1):
                target = self.events * n // (len(schedule) + 1)
                await self._until(lambda target=target: self._committed(target), f"{target:,} inputs committed",
                                  300, main)
                await self._until(lambda: began(main), "the pipeline began a transaction", 120, main)
                self.say(f"fault {n}/{len(schedule)}: {kind} at {target:,} committed inputs")
                await self._fault(kind, main, second)
                self.figures.faults[kind] += 1
            await producing
        finally:
            producing.cancel()

    async def _fault(self, kind: str, main: Instance, second: Instance) -> None:
        if kind == "kill9":
            main.kill()
            main.start()
        elif kind == "sigterm":
            code = await main.stop()
            assert code == 0, f"SIGTERM: exit {code}\n{main.tail()}"
            main.start()
        elif kind == "broker":
            await asyncio.to_thread(self.restart_broker)
            main.revive()
        else:  # join: a second member works a while, then leaves
            second.start()

            await self._until(lambda: began(second), "the second instance joined", 120, main)
            target = min(self.events, await self._committed_total() + self.rate * 3)  # ~3 s of input
            await self._until(lambda: self._committed(target), "progress with two members", 300, main)
            code = await second.stop()
            assert code == 0, f"second instance: exit {code}\n{second.tail()}"

    async def _until(self, check: Callable[[], Awaitable[bool]], what: str, timeout: float,
                     main: Instance) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise AssertionError(f"soak: {what}: not within {timeout}s\n{main.tail()}")
            main.revive()  # e.g. it failed while the broker was away: a restart resumes from the last commit
            await asyncio.sleep(0.5)

    # -- Kafka side -------------------------------------------------------------------
    async def _create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in self.topics.values()])
        finally:
            await admin.close()

    async def _produce(self) -> None:
        """Write the inputs at ``rate`` events a second (a tenth of a second's worth at a time)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20,  # idempotent:
                                    max_batch_size=512 * 1024, request_timeout_ms=120_000,  # no input twice
                                    enable_idempotence=True)
        await producer.start()
        try:
            topic, step = self.topics["IN_TOPIC"], max(1, self.rate // 10)
            loop = asyncio.get_running_loop()
            began = loop.time()
            for start in range(0, self.events, step):
                pending = []
                for i in range(start, min(start + step, self.events)):
                    value = event(i, self.keys)
                    pending.append(await producer.send(topic, orjson.dumps(value), key=value["key"].encode()))
                await asyncio.gather(*pending)
                await asyncio.sleep(max(0.0, began + (start + step) / self.rate - loop.time()))
        finally:
            await producer.stop()

    async def _committed_total(self) -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                                    enable_auto_commit=False)
        try:
            await consumer.start()
            tps = [TopicPartition(self.topics["IN_TOPIC"], p) for p in range(PARTITIONS)]
            return sum([(await consumer.committed(tp)) or 0 for tp in tps])
        except Exception as exc:  # noqa: BLE001 - the broker is restarting: no progress known
            self.say(f"committed offsets unknown: {type(exc).__name__}: {exc}")
            return 0
        finally:
            await consumer.stop()

    async def _committed(self, n: int) -> bool:
        return await self._committed_total() >= n

    async def _consumed_all(self) -> bool:
        return await self._committed_total() >= self.events

    # -- the verifier -------------------------------------------------------------------
    async def _verify(self) -> None:
        f = self.figures
        outputs = await read_committed(self.bootstrap, self.topics["OUT_TOPIC"])
        dead = await read_committed(self.bootstrap, self.topics["DLQ_TOPIC"])
        f.outputs, f.dead_letters = len(outputs), len(dead)
        inputs = await read_committed(self.bootstrap, self.topics["IN_TOPIC"])
        f.input_duplicates = len(inputs) - len({(v["key"], v["seq"]) for v in inputs})
        seen: Counter[tuple[str, int]] = Counter()
        last: dict[str, int] = {}
        expected_total: dict[tuple[str, int], int] = {}
        running: defaultdict[str, int] = defaultdict(int)
        for i in range(self.events):
            e = event(i, self.keys)
            if not e.get("bad"):
                running[e["key"]] += e["amount"]
                expected_total[(e["key"], e["seq"])] = running[e["key"]]
        for v in outputs:
            k = (v["key"], v["seq"])
            seen[k] += 1
            if seen[k] == 1 and last.get(v["key"], -1) >= v["seq"]:
                f.out_of_order += 1
            last[v["key"]] = max(last.get(v["key"], -1), v["seq"])
            if expected_total.get(k) != v["total"]:
                f.wrong_totals += 1
        for v in dead:
            seen[(v["key"], v["seq"])] += 1
        expected = {(e["key"], e["seq"]) for e in (event(i, self.keys) for i in range(self.events))}
        f.missing = len(expected - set(seen))
        f.duplicates = sum(c - 1 for c in seen.values()) + len(set(seen) - expected)
        topics = [*self.topics.values(), f"{self.name}-total-changelog"]
        f.open_transactions = sum([await open_transactions(self.bootstrap, t) for t in topics])
        f.committed_behind = self.events - await self._committed_total()


async def began(instance: Instance) -> bool:
    """Whether ``instance``'s current run owns partitions and began a transaction (its signal handlers are in)."""
    return instance.said("exactly_once: transactional id")


async def read_committed(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed record of ``topic`` (JSON values), in partition order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[dict[str, Any]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            for records in batch.values():
                out.extend(orjson.loads(r.value) for r in records)
        return out
    finally:
        await consumer.stop()


async def open_transactions(bootstrap: str, topic: str) -> int:
    """Partitions of ``topic`` whose last stable offset is below their end: an open transaction."""
    ends = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level=isolation)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set(range(PARTITIONS))
            ends[isolation] = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        finally:
            await consumer.stop()
    return sum(1 for tp, end in ends["read_uncommitted"].items() if ends["read_committed"][tp] < end)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Exactly-once soak of a stateful Kafka -> Kafka pipeline.")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--faults", type=int, default=10, help="faults of each kind (kill9, sigterm, broker, join)")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--commit-interval", type=float, default=1.0)
    ap.add_argument("--rate", type=int, default=0, help="input events a second (default: ~10 s per fault)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="the fault kinds to inject (comma-separated)")
    ap.add_argument("--workdir", type=Path, help="keep the pipelines' logs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eos-soak-") as tmp, KafkaBroker() as broker:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        soak = Soak(broker.bootstrap, broker.restart, workdir, events=args.events, faults=args.faults,
                    keys=args.keys, commit_interval=args.commit_interval,
                    kinds=tuple(args.kinds.split(",")), rate=args.rate,
                    say=lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True))
        figures = asyncio.run(soak.run())
    print(figures.report())
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
