"""Run a dev broker in the foreground until Ctrl-C or SIGTERM: what `streamflow dev kafka` does."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TextIO

from .broker import KafkaBroker, port_is_free
from .jars import KafkaHarnessError, ensure_jars, kafka_version

__all__ = ["DevKafka", "fetch_jars", "parse_topic"]

#: The port the example pipelines and the README expect (``KAFKA_BOOTSTRAP``'s default).
DEFAULT_PORT = 9092


def parse_topic(spec: str) -> tuple[str, int]:
    """``NAME[:PARTITIONS]`` -> (name, partitions); 3 partitions unless given."""
    name, _, parts = spec.partition(":")
    if not name or (parts and not parts.isdigit()) or parts == "0":
        raise ValueError(f"bad topic {spec!r}: expected NAME or NAME:PARTITIONS (a positive number)")
    return name, int(parts or 3)


def fetch_jars(out: TextIO = sys.stderr) -> int:
    """Only resolve the jars into the cache (a CI warm-up step); prints what it got. Exit code."""
    started = time.monotonic()
    try:
        lib = ensure_jars(quiet=False)
    except KafkaHarnessError as exc:
        print(f"error: {exc}", file=out)
        return 1
    jars = list(lib.glob("*.jar"))
    size = sum(j.stat().st_size for j in jars)
    print(f"Kafka {kafka_version()}: {len(jars)} jars, {size / 2**20:.1f} MiB in {lib} "
          f"({time.monotonic() - started:.1f}s)", file=out)
    return 0


@dataclass
class DevKafka:
    """A broker run in the foreground: started, its topics created, kept until a signal, closed."""

    port: int | None = DEFAULT_PORT
    topics: Sequence[str] = ()
    workdir: str | None = None
    keep: bool = False
    heap: str = "512m"
    config: Mapping[str, str] = field(default_factory=dict)
    #: Where the address goes (one line, for scripts) and where the rest goes.
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr

    def run(self) -> int:
        """Start, print the address, wait for SIGINT/SIGTERM (or the broker dying); exit code."""
        try:
            topics = [parse_topic(t) for t in self.topics]
        except ValueError as exc:
            return self._error(str(exc))
        if self.port is not None and not port_is_free("127.0.0.1", self.port):
            return self._error(f"127.0.0.1:{self.port} is in use: is a broker running there already? "
                               "Use it, stop it, or start this one on another port with --port N")
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._serve(topics, stop)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _serve(self, topics: list[tuple[str, int]], stop: threading.Event) -> int:
        broker = KafkaBroker(port=self.port, workdir=self.workdir, heap=self.heap, config=self.config,
                             keep_workdir=self.keep or None)
        try:
            print(f"starting Kafka {kafka_version()} on 127.0.0.1 (the first run fetches its jars "
                  "with Maven) ...", file=self.err, flush=True)
            broker.start()
            for name, partitions in topics:
                broker.create_topic(name, partitions)
        except KafkaHarnessError as exc:
            broker.close()
            return self._error(str(exc))
        try:
            self._announce(broker, topics)
            while not stop.wait(0.5):
                if not broker.is_running():
                    return self._error(f"the broker exited unexpectedly\n{broker.tail_log(40)}")
            print("stopping Kafka ...", file=self.err, flush=True)
            return 0
        finally:
            broker.close()
            if broker.keep_workdir and broker.workdir:
                print(f"kept its data and logs in {broker.workdir}", file=self.err)

    def _announce(self, broker: KafkaBroker, topics: list[tuple[str, int]]) -> None:
        print(broker.bootstrap, file=self.out, flush=True)
        made = ", ".join(f"{name} ({n} partitions)" for name, n in topics) or "none yet (auto-created on use)"
        keep = "kept" if broker.keep_workdir else "deleted when it stops"
        print(f"Kafka {kafka_version()} ready at {broker.bootstrap} in {broker.last_start_seconds:.1f}s\n"
              f"  topics:  {made}\n"
              f"  use it:  KAFKA_BOOTSTRAP={broker.bootstrap}   (the examples' default is 127.0.0.1:9092)\n"
              f"  stop it: Ctrl-C here, or kill {os.getpid()} (SIGTERM)\n"
              f"  data:    {broker.workdir} ({keep}); log: {broker.log_file}",
              file=self.err, flush=True)

    def _error(self, message: str) -> int:
        print(f"error: {message}", file=self.err, flush=True)
        return 1

