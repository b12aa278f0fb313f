"""How the dev broker's JVM is configured and launched: ``server.properties``, log4j2, the java command.

Also the process-level helpers of the launcher: free ports, the log tail
shown on failure, and the child's death signal when its parent dies.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path

from .jars import find_java

__all__ = ["LOG4J2", "free_port", "java_command", "port_is_free", "server_properties"]

#: log4j2 configuration of the broker: INFO to ``{log_file}``, chatty loggers at WARN.
LOG4J2 = """\
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


def server_properties(host: str, port: int, controller_port: int, data_dir: Path) -> dict[str, str]:
    """``server.properties`` of a single-node KRaft broker+controller listening on ``host`` only."""
    h, p, c = host, port, controller_port
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
        "log.dirs": str(data_dir),
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
    return props


def java_command(lib: Path, workdir: Path, main: str, *args: str, heap: str | None = None,
                 extra_jvm: Iterable[str] = ()) -> list[str]:
    """The JVM command line running ``main`` on the jars of ``lib``, logging into ``workdir/logs``."""
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
        "-cp", str(lib / "*"),
        main, *args,
    ]
    return cmd


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (another process may take it before you bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port



def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def random_cluster_id() -> str:
    """A new KRaft cluster id."""
    # Same shape as org.apache.kafka.common.Uuid.randomUuid().toString():
    # URL-safe base64 of 16 bytes, no padding, never starting with '-'.
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a (log) file, "" if unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def set_pdeathsig() -> None:
    """In the child before exec (Linux): die with SIGTERM when the parent dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass
