"""`KafkaBroker`: a real single-node Apache Kafka 4.x broker (KRaft) on 127.0.0.1, from the release jars.

One JVM is both broker and controller; the jars come from `ensure_jars`.
`streamflow dev kafka` runs one for development; the test suite starts one
per session (and more for tests that restart it)::

    with KafkaBroker() as kafka:
        kafka.create_topic("events", partitions=3)
        produce_to(kafka.bootstrap)          # "127.0.0.1:<port>"
        kafka.restart()                      # same ports, same data

Environment: ``STREAMFLOW_KAFKA_JVM_OPTS`` (extra JVM options, split on
whitespace), ``STREAMFLOW_KAFKA_KEEP=1`` (never delete work directories), and
those of `streamflow.dev.kafka.jars`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from . import wire
from .jars import KafkaHarnessError, ensure_jars
from .server import (
    LOG4J2,
    free_port,
    java_command,
    port_is_free,
    random_cluster_id,
    server_properties,
    set_pdeathsig,
    tail,
)

__all__ = ["KafkaBroker", "free_port", "port_is_free"]

#: Main classes (Kafka 4.x).
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"  # still Scala, in kafka_2.13.jar
TOPIC_COMMAND_MAIN = "org.apache.kafka.tools.TopicCommand"  # kafka-tools.jar


_LIVE: weakref.WeakSet[KafkaBroker] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_LIVE):
        try:
            broker.kill()
        except Exception:
            pass



class KafkaBroker:
    """A real single-node Kafka 4.x broker (KRaft, broker+controller) on 127.0.0.1.

    Nothing runs until :meth:`start`.  The ports are chosen on the first
    start (unless given) and kept for the life of the object, and so is the
    work directory (``data/`` = ``log.dirs``, ``logs/`` = broker logs), so
    :meth:`restart` brings the same broker back with its data.

    ``config`` entries override/extend the generated ``server.properties``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        lib_dir: str | os.PathLike[str] | None = None,
        config: Mapping[str, object] | None = None,
        heap: str = "512m",
        startup_timeout: float = 90.0,
        keep_workdir: bool | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self._given_ports = port is not None or controller_port is not None
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self._lib_dir = Path(lib_dir) if lib_dir else None
        self.extra_config = {k: str(v) for k, v in (config or {}).items()}
        self.heap = heap
        self.startup_timeout = startup_timeout
        if keep_workdir is None:
            keep_workdir = os.environ.get("STREAMFLOW_KAFKA_KEEP") == "1"
        self.keep_workdir = keep_workdir
        self.cluster_id: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._stdout_fh: IO[str] | None = None
        self._formatted = False
        #: Seconds from JVM launch to "answers a Metadata request" (last start).
        self.last_start_seconds: float | None = None
        #: Seconds the last stop() took.
        self.last_stop_seconds: float | None = None

    # ---- paths ------------------------------------------------------------

    def _require_workdir(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="streamflow-kafka-"))
        return self.workdir

    @property
    def data_dir(self) -> Path:
        return self._require_workdir() / "data"

    @property
    def log_file(self) -> Path:
        """The broker's log4j log (server.log); print it when a test fails."""
        return self._require_workdir() / "logs" / "server.log"

    @property
    def stdout_file(self) -> Path:
        """The JVM's stdout/stderr (JVM crashes, format output, etc.)."""
        return self._require_workdir() / "logs" / "stdout.log"

    @property
    def config_file(self) -> Path:
        return self._require_workdir() / "server.properties"

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:<port>"`` (valid once started, and across restarts)."""
        if self.port is None:
            raise KafkaHarnessError("broker not started yet: no port assigned")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail_log(self, lines: int = 200) -> str:
        """Last lines of server.log and of the JVM stdout, for failure reports."""
        parts = []
        for path in (self.stdout_file, self.log_file):
            text = tail(path, lines)
            if text:
                parts.append(f"----- {path} (last {lines} lines) -----\n{text}")
        return "\n".join(parts) or "(no broker logs)"

    # ---- configuration ------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        """The generated ``server.properties``, with ``config``'s entries over it."""
        assert self.port is not None and self.controller_port is not None
        props = server_properties(self.host, self.port, self.controller_port, self.data_dir)
        props.update(self.extra_config)
        return props

    def _write_config(self) -> None:
        workdir = self._require_workdir()
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self.server_properties().items()]
        self.config_file.write_text("\n".join(lines) + "\n")
        (workdir / "log4j2.properties").write_text(
            LOG4J2.format(log_file=str(self.log_file).replace("\\", "/"))
        )

    def _java_cmd(self, main: str, *args: str, heap: str | None = None,
                  extra_jvm: Iterable[str] = ()) -> list[str]:
        if self._lib_dir is None:
            self._lib_dir = ensure_jars()
        return java_command(self._lib_dir, self._require_workdir(), main, *args, heap=heap,
                            extra_jvm=extra_jvm)

    # ---- lifecycle ------------------------------------------------------------

    def _pick_ports(self) -> None:
        if self.port is None:
            self.port = free_port(self.host)
        if self.controller_port is None:
            port = free_port(self.host)
            while port == self.port:
                port = free_port(self.host)
            self.controller_port = port

    def _format(self) -> None:
        self.cluster_id = self.cluster_id or random_cluster_id()
        cmd = self._java_cmd(
            STORAGE_TOOL_MAIN, "format",
            "--cluster-id", self.cluster_id,
            "--config", str(self.config_file),
            heap="256m", extra_jvm=["-XX:TieredStopAtLevel=1"],
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        with open(self.stdout_file, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
        if proc.returncode != 0:
            raise KafkaHarnessError(
                f"formatting Kafka storage failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}"
            )
        self._formatted = True

    def start(self) -> KafkaBroker:
        """Start the broker and block until it answers a Metadata request.

        The first start picks free loopback ports and formats the storage;
        later starts (see :meth:`restart`) reuse both.  Raises
        :class:`KafkaHarnessError` (with the log tail) if the broker is not
        ready within ``startup_timeout`` seconds.
        """
        if self.is_running():
            return self
        if self._lib_dir is None:
            self._lib_dir = ensure_jars()
        attempts = 1 if (self._given_ports or self._formatted) else 3
        for attempt in range(1, attempts + 1):
            self._pick_ports()
            try:
                self._start_once()
                return self
            except _PortClash:
                if attempt == attempts:
                    raise KafkaHarnessError(
                        f"port {self.port}/{self.controller_port} already in use\n"
                        + self.tail_log(60)
                    ) from None
                # Another process grabbed a port between pick and bind: retry fresh.
                self.port = self.controller_port = None
        raise AssertionError("unreachable")

    def _start_once(self) -> None:
        for p in (self.port, self.controller_port):
            if not port_is_free(self.host, p):  # type: ignore[arg-type]
                if self._formatted or self._given_ports:
                    self._wait_port_free(p, 15.0)  # type: ignore[arg-type]
                else:
                    raise _PortClash()
        self._write_config()
        if not self._formatted:
            self._format()
        cmd = self._java_cmd(KAFKA_MAIN, str(self.config_file), heap=self.heap)
        self._stdout_fh = open(self.stdout_file, "a")
        self._stdout_fh.write(f"$ {' '.join(cmd)}\n")
        self._stdout_fh.flush()
        started = time.monotonic()
        use_pdeathsig = (sys.platform.startswith("linux")
                         and threading.current_thread() is threading.main_thread())
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout_fh,
            stderr=subprocess.STDOUT,
            cwd=str(self._require_workdir()),
            start_new_session=True,  # Ctrl-C in a terminal goes to us, not the JVM
            preexec_fn=set_pdeathsig if use_pdeathsig else None,
        )
        _LIVE.add(self)
        try:
            self._wait_ready(started)
        except BaseException:
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - started

    def _wait_port_free(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_is_free(self.host, port):
            if time.monotonic() > deadline:
                raise KafkaHarnessError(f"port {self.host}:{port} still in use")
            time.sleep(0.2)

    def _wait_ready(self, started: float) -> None:
        deadline = started + self.startup_timeout
        last_error: Exception | None = None
        while True:
            code = self.proc.poll() if self.proc else -1
            if code is not None:
                log = self.tail_log(80)
                if "Address already in use" in log or "BindException" in log:
                    if not (self._given_ports or self._formatted):
                        raise _PortClash()
                raise KafkaHarnessError(
                    f"Kafka broker exited with code {code} during startup\n{log}"
                )
            try:
                md = wire.metadata(self.host, self.port, topics=[], timeout=2.0)  # type: ignore[arg-type]
                if 1 in md["brokers"] and md["controller_id"] >= 0:
                    return
                last_error = KafkaHarnessError(f"metadata not ready yet: {md}")
            except (OSError, struct.error, KafkaHarnessError) as exc:
                last_error = exc
            if time.monotonic() > deadline:
                raise KafkaHarnessError(
                    f"Kafka broker not ready after {self.startup_timeout:.0f}s "
                    f"(last error: {last_error!r})\n{self.tail_log(80)}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown (SIGTERM), SIGKILL if it takes over ``timeout`` s."""
        started = time.monotonic()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            except ProcessLookupError:
                pass
        self._reap()
        self.last_stop_seconds = time.monotonic() - started

    def kill(self) -> None:
        """Hard-kill the JVM (SIGKILL): simulates a broker crash."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def _reap(self) -> None:
        if self._stdout_fh is not None:
            try:
                self._stdout_fh.close()
            except OSError:
                pass
            self._stdout_fh = None
        _LIVE.discard(self)

    def restart(self, *, hard: bool = False, downtime: float = 0.0,
                stop_timeout: float = 30.0) -> None:
        """Stop (SIGTERM, or SIGKILL if ``hard``) and start again on the same
        ports with the same data.  ``downtime`` sleeps between the two."""
        if hard:
            self.kill()
        else:
            self.stop(timeout=stop_timeout)
        if downtime > 0:
            time.sleep(downtime)
        self.start()

    def close(self) -> None:
        """Stop the broker and delete its work directory (unless kept)."""
        self.stop()
        if self._own_workdir and not self.keep_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> KafkaBroker:
        try:
            return self.start()
        except BaseException:
            self.stop()
            if self.workdir is not None:
                print(f"[kafka harness] broker failed to start; logs kept in {self.workdir}",
                      file=sys.stderr)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None and self.workdir is not None:
            # Keep the logs around for diagnosis when the block failed.
            self.keep_workdir = True
            self.stop()
            print(f"[kafka harness] keeping broker work dir {self.workdir} "
                  f"(log: {self.log_file})", file=sys.stderr)
            return
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        where = f"{self.host}:{self.port}" if self.port else "no port"
        return f"<KafkaBroker {where} {state} workdir={self.workdir}>"

    # ---- admin helpers ----------------------------------------------------------

    def _address(self) -> tuple[str, int]:
        if self.port is None:
            raise KafkaHarnessError("broker not started yet: no port assigned")
        return self.host, self.port

    def metadata(self, topics: Iterable[str] | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Raw Metadata (v4); see `wire.metadata`."""
        return wire.metadata(*self._address(), topics, timeout)

    def topics(self) -> dict[str, int]:
        """``{topic: partition count}`` for all non-errored topics."""
        md = self.metadata(None)
        return {name: len(t["partitions"]) for name, t in md["topics"].items()
                if t["error"] == 0}

    def create_topic(self, name: str, partitions: int = 3, replication_factor: int = 1,
                     config: Mapping[str, object] | None = None, *,
                     exist_ok: bool = True, timeout: float = 30.0) -> None:
        """Create a topic and wait until every partition has a leader (see `wire.create_topic`)."""
        wire.create_topic(*self._address(), name, partitions, replication_factor, config,
                          exist_ok=exist_ok, timeout=timeout)

    def wait_for_topic(self, name: str, partitions: int | None = None,
                       timeout: float = 30.0) -> None:
        """Block until ``name`` exists and all its partitions have a leader."""
        wire.wait_for_topic(*self._address(), name, partitions, timeout)

    def delete_topic(self, name: str, timeout: float = 30.0) -> None:
        """Delete a topic; a missing topic is not an error."""
        wire.delete_topic(*self._address(), name, timeout)

    def run_tool(self, main_class: str, *args: str, timeout: float = 120.0,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Kafka CLI class (e.g. ``org.apache.kafka.tools.ConsumerGroupCommand``)
        on the broker's classpath; its log4j output goes to the broker log."""
        cmd = self._java_cmd(main_class, *args, heap="256m",
                             extra_jvm=["-XX:TieredStopAtLevel=1"])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KafkaHarnessError(
                f"{main_class} {' '.join(args)} failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}")
        return proc

    def kafka_topics(self, *args: str, timeout: float = 120.0) -> str:
        """``kafka-topics.sh --bootstrap-server <bootstrap> ARGS`` (TopicCommand); stdout."""
        return self.run_tool(TOPIC_COMMAND_MAIN, "--bootstrap-server", self.bootstrap,
                             *args, timeout=timeout).stdout


class _PortClash(Exception):
    pass
