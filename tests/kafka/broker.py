"""A real, single-node Apache Kafka 4.x broker for the streamflow test suite.

The broker runs in KRaft mode (one JVM that is both broker and controller),
listens on 127.0.0.1 only, and is built from Apache Kafka's own release jars,
resolved from Maven Central with Maven through ``tests/kafka/pom.xml``.

Stdlib only.  Typical use::

    from tests.kafka.broker import KafkaBroker

    with KafkaBroker() as kafka:
        kafka.create_topic("events", partitions=3)
        produce_to(kafka.bootstrap)          # "127.0.0.1:<port>"
        kafka.restart()                      # same ports, same data
        ...

Command line::

    python tests/kafka/broker.py               # run a broker until Ctrl-C/SIGTERM
    python tests/kafka/broker.py --fetch-only  # only resolve the jars (CI warm-up)

Environment:

``STREAMFLOW_KAFKA_CACHE``
    Directory in which ``lib/`` (the resolved jars) is kept.  Default:
    ``~/.cache/streamflow/kafka-<version>``.
``STREAMFLOW_KAFKA_VERSION``
    Kafka version to resolve (default :data:`KAFKA_VERSION`).
``STREAMFLOW_MVN``
    The ``mvn`` executable to use (default: ``mvn`` on ``PATH``).
``JAVA_HOME``
    If set, ``$JAVA_HOME/bin/java`` is used, else ``java`` on ``PATH``.
``STREAMFLOW_KAFKA_JVM_OPTS``
    Extra JVM options for the broker, split on whitespace.
``STREAMFLOW_KAFKA_KEEP``
    If ``1``, broker work directories (data + logs) are never deleted.
``STREAMFLOW_TEST_BOOTSTRAP``
    Not read by :class:`KafkaBroker`; tests use an external broker at that
    address instead of starting one (see :func:`external_bootstrap`).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import errno
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "KAFKA_VERSION",
    "KafkaHarnessError",
    "KafkaBroker",
    "default_cache_dir",
    "ensure_jars",
    "external_bootstrap",
    "find_java",
    "find_mvn",
    "kafka_version",
]

#: Default Apache Kafka version (must exist on Maven Central as
#: ``org.apache.kafka:kafka_2.13``).
KAFKA_VERSION = "4.1.2"

#: Main classes (Kafka 4.x).
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"  # still Scala, in kafka_2.13.jar
TOPIC_COMMAND_MAIN = "org.apache.kafka.tools.TopicCommand"  # kafka-tools.jar

_HERE = Path(__file__).resolve().parent
POM = _HERE / "pom.xml"

_MARKER = "jars.ok"
_LOCK = ".lock"
_MIN_JAVA = 17


class KafkaHarnessError(RuntimeError):
    """Anything that went wrong while resolving, starting or talking to Kafka."""


# --------------------------------------------------------------------------
# Tool discovery
# --------------------------------------------------------------------------


def kafka_version() -> str:
    return os.environ.get("STREAMFLOW_KAFKA_VERSION") or KAFKA_VERSION


def external_bootstrap() -> str | None:
    """``$STREAMFLOW_TEST_BOOTSTRAP`` if set: tests should use that broker."""
    value = os.environ.get("STREAMFLOW_TEST_BOOTSTRAP", "").strip()
    return value or None


def find_java() -> str:
    """Path of a ``java`` (17+) executable, or a clear :class:`KafkaHarnessError`."""
    candidates = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    found = shutil.which("java")
    if found:
        candidates.append(found)
    for java in candidates:
        if os.path.isfile(java) and os.access(java, os.X_OK):
            _check_java_version(java)
            return java
    raise KafkaHarnessError(
        "java not found: the Kafka test broker needs a Java 17+ runtime on PATH "
        "(or JAVA_HOME). On Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless. "
        "Alternatively point STREAMFLOW_TEST_BOOTSTRAP at an existing broker."
    )


_java_checked: dict[str, int] = {}


def _check_java_version(java: str) -> None:
    if java in _java_checked:
        return
    try:
        out = subprocess.run(
            [java, "-XshowSettings:properties", "-version"],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaHarnessError(f"could not run {java}: {exc}") from exc
    major = 0
    for line in (out.stderr + out.stdout).splitlines():
        line = line.strip()
        if line.startswith("java.specification.version"):
            value = line.split("=", 1)[1].strip()
            try:
                major = int(value.split(".")[1] if value.startswith("1.") else value.split(".")[0])
            except ValueError:
                major = 0
            break
    if major and major < _MIN_JAVA:
        raise KafkaHarnessError(
            f"{java} is Java {major}; Kafka 4.x brokers need Java {_MIN_JAVA}+"
        )
    _java_checked[java] = major


def find_mvn() -> str:
    """Path of the ``mvn`` executable, or a clear :class:`KafkaHarnessError`."""
    mvn = os.environ.get("STREAMFLOW_MVN") or shutil.which("mvn")
    if mvn and (shutil.which(mvn) or os.path.isfile(mvn)):
        return mvn
    raise KafkaHarnessError(
        "mvn (Apache Maven) not found: it is needed once to resolve the Kafka "
        "broker jars from Maven Central (tests/kafka/pom.xml). On Debian/Ubuntu: "
        "apt-get install -y maven. Or set STREAMFLOW_MVN, or pre-populate "
        "STREAMFLOW_KAFKA_CACHE, or point STREAMFLOW_TEST_BOOTSTRAP at a broker."
    )


# --------------------------------------------------------------------------
# Jar resolution
# --------------------------------------------------------------------------


def default_cache_dir(version: str | None = None) -> Path:
    env = os.environ.get("STREAMFLOW_KAFKA_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "streamflow" / f"kafka-{version or kafka_version()}"


def _marker_text(version: str) -> str:
    pom_sha = hashlib.sha256(POM.read_bytes()).hexdigest()
    return f"kafka={version}\npom-sha256={pom_sha}\n"


def _jars_ready(cache_dir: Path, expected: str) -> bool:
    marker = cache_dir / _MARKER
    lib = cache_dir / "lib"
    try:
        return marker.read_text() == expected and any(lib.glob("kafka_2.13-*.jar"))
    except OSError:
        return False


class _FileLock:
    """Exclusive ``flock`` on a file, with a bounded wait."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> _FileLock:
        import fcntl

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    os.close(self._fd)
                    self._fd = None
                    raise KafkaHarnessError(
                        f"timed out after {self.timeout:.0f}s waiting for lock {self.path} "
                        "(another process resolving the Kafka jars?)"
                    ) from None
                time.sleep(0.25)

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def ensure_jars(cache_dir: Path | None = None, *, timeout: float = 1200.0,
                quiet: bool = True) -> Path:
    """Resolve the Kafka broker jars once and return the directory holding them.

    ``cache_dir`` (default :func:`default_cache_dir`, i.e.
    ``$STREAMFLOW_KAFKA_CACHE`` or ``~/.cache/streamflow/kafka-<version>``)
    receives ``lib/`` with every jar, plus a marker file recording the Kafka
    version and the hash of ``pom.xml``; while both match, nothing is done.
    Concurrent callers (several pytest-xdist workers, say) serialise on a
    file lock, and jars are copied to a temporary directory that is renamed
    into place only when complete, so a half-resolved ``lib/`` is never used.

    Returns ``cache_dir / "lib"``, to be used as the classpath ``lib/*``.
    """
    version = kafka_version()
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(version)
    lib = cache_dir / "lib"
    expected = _marker_text(version)
    if _jars_ready(cache_dir, expected):
        return lib

    cache_dir.mkdir(parents=True, exist_ok=True)
    with _FileLock(cache_dir / _LOCK, timeout=timeout):
        if _jars_ready(cache_dir, expected):  # someone else did it meanwhile
            return lib
        mvn = find_mvn()
        find_java()  # fail early and clearly if there is no usable JVM
        staging = Path(tempfile.mkdtemp(prefix="lib.partial-", dir=cache_dir))
        cmd = [
            mvn, "-B", "-f", str(POM),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        if quiet:
            cmd.insert(1, "-q")
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaHarnessError(f"mvn timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise KafkaHarnessError(
                f"resolving Kafka {version} jars with Maven failed (exit {proc.returncode}):\n"
                f"  {' '.join(cmd)}\n{tail}"
            )
        (cache_dir / _MARKER).unlink(missing_ok=True)
        if lib.exists():
            shutil.rmtree(lib)
        staging.chmod(0o755)
        staging.rename(lib)
        (cache_dir / _MARKER).write_text(expected)
        if not quiet:
            print(f"resolved Kafka {version} jars into {lib} in "
                  f"{time.monotonic() - started:.1f}s", file=sys.stderr)
    return lib


# --------------------------------------------------------------------------
# Minimal Kafka wire protocol (non-flexible request versions only)
# --------------------------------------------------------------------------

_API_METADATA = 3
_API_CREATE_TOPICS = 19
_API_DELETE_TOPICS = 20
_ERRORS = {
    3: "UNKNOWN_TOPIC_OR_PARTITION",
    5: "LEADER_NOT_AVAILABLE",
    7: "REQUEST_TIMED_OUT",
    17: "INVALID_TOPIC_EXCEPTION",
    35: "UNSUPPORTED_VERSION",
    36: "TOPIC_ALREADY_EXISTS",
    37: "INVALID_PARTITIONS",
    38: "INVALID_REPLICATION_FACTOR",
    40: "INVALID_CONFIG",
    41: "NOT_CONTROLLER",
    42: "INVALID_REQUEST",
}


def _str(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        value = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return value


_correlation = 0
_correlation_lock = threading.Lock()


def _request(host: str, port: int, api_key: int, api_version: int, body: bytes,
             timeout: float = 5.0) -> _Reader:
    """One request/response round trip (request header v1, response header v0)."""
    global _correlation
    with _correlation_lock:
        _correlation = (_correlation + 1) & 0x7FFFFFFF
        corr = _correlation
    header = struct.pack(">hhi", api_key, api_version, corr) + _str("streamflow-test-harness")
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != corr:
        raise KafkaHarnessError("Kafka response correlation id mismatch")
    return reader


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _metadata(host: str, port: int, topics: Iterable[str] | None = None,
              timeout: float = 5.0) -> dict:
    """Metadata v4 (the lowest version Kafka 4 still accepts)."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        topics = list(topics)
        body = struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics)
    body += struct.pack(">b", 0)  # allow_auto_topic_creation = false
    r = _request(host, port, _API_METADATA, 4, body, timeout)
    r.take(">i")  # throttle_time_ms
    brokers = {}
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        bhost = r.string()
        bport = r.take(">i")
        r.string()  # rack
        brokers[node_id] = (bhost, bport)
    cluster_id = r.string()
    controller_id = r.take(">i")
    out_topics = {}
    for _ in range(r.take(">i")):
        err = r.take(">h")
        name = r.string()
        r.take(">b")  # is_internal
        parts = {}
        for _ in range(r.take(">i")):
            perr = r.take(">h")
            index = r.take(">i")
            leader = r.take(">i")
            for _ in range(r.take(">i")):
                r.take(">i")  # replicas
            for _ in range(r.take(">i")):
                r.take(">i")  # isr
            parts[index] = (perr, leader)
        out_topics[name] = {"error": err, "partitions": parts}
    return {"brokers": brokers, "cluster_id": cluster_id,
            "controller_id": controller_id, "topics": out_topics}


# --------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _random_cluster_id() -> str:
    # Same shape as org.apache.kafka.common.Uuid.randomUuid().toString():
    # URL-safe base64 of 16 bytes, no padding, never starting with '-'.
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


_LOG4J2 = """\
status = warn
name = streamflow-test-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""

_LIVE: weakref.WeakSet[KafkaBroker] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_LIVE):
        try:
            broker.kill()
        except Exception:
            pass


def _set_pdeathsig() -> None:  # runs in the child before exec (Linux only)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
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
        workdir: str | os.PathLike | None = None,
        lib_dir: str | os.PathLike | None = None,
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
        self.proc: subprocess.Popen | None = None
        self._stdout_fh = None
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
            text = _tail(path, lines)
            if text:
                parts.append(f"----- {path} (last {lines} lines) -----\n{text}")
        return "\n".join(parts) or "(no broker logs)"

    # ---- configuration ------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        assert self.port is not None and self.controller_port is not None
        h, p, c = self.host, self.port, self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Static quorum: no --standalone/--initial-controllers at format time.
            "controller.quorum.voters": f"1@{h}:{c}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted controller refuses the broker's new
            # registration (DUPLICATE_BROKER_REGISTRATION) until the old
            # session expires: default 9 s. Shorter = faster crash-restarts.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        props.update(self.extra_config)
        return props

    def _write_config(self) -> None:
        workdir = self._require_workdir()
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self.server_properties().items()]
        self.config_file.write_text("\n".join(lines) + "\n")
        (workdir / "log4j2.properties").write_text(
            _LOG4J2.format(log_file=str(self.log_file).replace("\\", "/"))
        )

    def _java_cmd(self, main: str, *args: str, heap: str | None = None,
                  extra_jvm: Iterable[str] = ()) -> list[str]:
        if self._lib_dir is None:
            self._lib_dir = ensure_jars()
        lib = self._lib_dir
        workdir = self._require_workdir()
        cmd = [find_java()]
        if heap:
            cmd += ["-Xms128m", f"-Xmx{heap}"]
        cmd += [
            "-server",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dkafka.logs.dir={workdir / 'logs'}",
            f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
            *extra_jvm,
            *os.environ.get("STREAMFLOW_KAFKA_JVM_OPTS", "").split(),
            "-cp", str(Path(lib) / "*"),
            main, *args,
        ]
        return cmd

    # ---- lifecycle ------------------------------------------------------------

    def _pick_ports(self) -> None:
        if self.port is None:
            self.port = _free_port(self.host)
        if self.controller_port is None:
            port = _free_port(self.host)
            while port == self.port:
                port = _free_port(self.host)
            self.controller_port = port

    def _format(self) -> None:
        self.cluster_id = self.cluster_id or _random_cluster_id()
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
            if not _port_is_free(self.host, p):  # type: ignore[arg-type]
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
            preexec_fn=_set_pdeathsig if use_pdeathsig else None,
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
        while not _port_is_free(self.host, port):
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
                md = _metadata(self.host, self.port, topics=[], timeout=2.0)  # type: ignore[arg-type]
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

    def __exit__(self, exc_type, exc, tb) -> None:
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

    def metadata(self, topics: Iterable[str] | None = None, timeout: float = 5.0) -> dict:
        """Raw Metadata (v4): ``{"brokers": {id: (host, port)}, "cluster_id",
        "controller_id", "topics": {name: {"error", "partitions": {i: (err, leader)}}}}``."""
        return _metadata(self.host, self.port, topics, timeout)  # type: ignore[arg-type]

    def topics(self) -> dict[str, int]:
        """``{topic: partition count}`` for all non-errored topics."""
        md = self.metadata(None)
        return {name: len(t["partitions"]) for name, t in md["topics"].items()
                if t["error"] == 0}

    def create_topic(self, name: str, partitions: int = 3, replication_factor: int = 1,
                     config: Mapping[str, object] | None = None, *,
                     exist_ok: bool = True, timeout: float = 30.0) -> None:
        """Create a topic (CreateTopics v4 over the wire) and wait until every
        partition has a leader.  ``exist_ok`` ignores TOPIC_ALREADY_EXISTS."""
        cfg = dict(config or {})
        body = struct.pack(">i", 1) + _str(name) + struct.pack(">ih", partitions, replication_factor)
        body += struct.pack(">i", 0)  # no manual assignments
        body += struct.pack(">i", len(cfg)) + b"".join(
            _str(str(k)) + _str(None if v is None else str(v)) for k, v in cfg.items())
        body += struct.pack(">ib", int(timeout * 1000), 0)
        r = _request(self.host, self.port, _API_CREATE_TOPICS, 4, body, timeout + 5)  # type: ignore[arg-type]
        r.take(">i")  # throttle
        for _ in range(r.take(">i")):
            tname, err, msg = r.string(), r.take(">h"), r.string()
            if err == 36 and exist_ok:
                continue
            if err:
                raise KafkaHarnessError(
                    f"CreateTopics {tname!r} failed: {_ERRORS.get(err, err)} {msg or ''}")
        self.wait_for_topic(name, partitions=None if exist_ok else partitions, timeout=timeout)

    def wait_for_topic(self, name: str, partitions: int | None = None,
                       timeout: float = 30.0) -> None:
        """Block until ``name`` exists and all its partitions have a leader."""
        deadline = time.monotonic() + timeout
        while True:
            md = self.metadata([name])
            t = md["topics"].get(name)
            if t and t["error"] == 0 and t["partitions"] and (
                partitions is None or len(t["partitions"]) == partitions
            ) and all(err == 0 and leader >= 0 for err, leader in t["partitions"].values()):
                return
            if time.monotonic() > deadline:
                raise KafkaHarnessError(f"topic {name!r} not ready after {timeout}s: {t}")
            time.sleep(0.05)

    def delete_topic(self, name: str, timeout: float = 30.0) -> None:
        """Delete a topic (DeleteTopics v3); a missing topic is not an error."""
        body = struct.pack(">i", 1) + _str(name) + struct.pack(">i", int(timeout * 1000))
        r = _request(self.host, self.port, _API_DELETE_TOPICS, 3, body, timeout + 5)  # type: ignore[arg-type]
        r.take(">i")
        for _ in range(r.take(">i")):
            tname, err = r.string(), r.take(">h")
            if err not in (0, 3):
                raise KafkaHarnessError(f"DeleteTopics {tname!r} failed: {_ERRORS.get(err, err)}")

    def run_tool(self, main_class: str, *args: str, timeout: float = 120.0,
                 check: bool = True) -> subprocess.CompletedProcess:
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


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Run a real single-node Kafka (KRaft) broker on 127.0.0.1 for streamflow.")
    ap.add_argument("--fetch-only", action="store_true",
                    help="only resolve the Kafka jars into the cache, then exit")
    ap.add_argument("--port", type=int, help="PLAINTEXT port (default: a free one)")
    ap.add_argument("--controller-port", type=int, help="CONTROLLER port (default: a free one)")
    ap.add_argument("--workdir", help="data+log directory (default: a fresh temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory on exit")
    ap.add_argument("--heap", default="512m", help="JVM max heap (default 512m)")
    ap.add_argument("--topic", action="append", default=[], metavar="NAME[:PARTITIONS]",
                    help="create this topic once the broker is up (repeatable)")
    ap.add_argument("-c", "--config", action="append", default=[], metavar="KEY=VALUE",
                    help="extra server.properties entry (repeatable)")
    args = ap.parse_args(argv)

    if args.fetch_only:
        started = time.monotonic()
        try:
            lib = ensure_jars(quiet=False)
        except KafkaHarnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        jars = list(lib.glob("*.jar"))
        size = sum(j.stat().st_size for j in jars)
        print(f"Kafka {kafka_version()}: {len(jars)} jars, {size / 2**20:.1f} MiB in {lib} "
              f"({time.monotonic() - started:.1f}s)")
        return 0

    config = dict(kv.split("=", 1) for kv in args.config)
    broker = KafkaBroker(port=args.port, controller_port=args.controller_port,
                         workdir=args.workdir, heap=args.heap, config=config,
                         keep_workdir=args.keep or None)

    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        broker.start()
    except KafkaHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        broker.stop()
        return 1
    try:
        for spec in args.topic:
            name, _, parts = spec.partition(":")
            broker.create_topic(name, int(parts or 3))
    except KafkaHarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        broker.close()
        return 1
    print(broker.bootstrap, flush=True)
    print(f"[kafka harness] Kafka {kafka_version()} ready in {broker.last_start_seconds:.1f}s; "
          f"controller 127.0.0.1:{broker.controller_port}; pid {broker.pid}; "
          f"log {broker.log_file}; Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            if not broker.is_running():
                print(f"[kafka harness] broker exited unexpectedly\n{broker.tail_log(40)}",
                      file=sys.stderr)
                return 1
    finally:
        broker.close()
        if broker.keep_workdir and broker.workdir:
            print(f"[kafka harness] kept {broker.workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
