"""Just enough of Kafka's wire protocol to administer the dev broker: metadata, create and delete topics.

Non-flexible request versions only (request header v1, response header v0),
stdlib sockets, blocking: the broker launcher uses it while no event loop runs.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .jars import KafkaHarnessError

__all__ = ["create_topic", "delete_topic", "metadata", "wait_for_topic"]

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
    """A Kafka (nullable) STRING: int16 length, then UTF-8."""
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


class _Reader:
    """Reads big-endian fields off one response body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
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


def metadata(host: str, port: int, topics: Iterable[str] | None = None,
             timeout: float = 5.0) -> dict[str, Any]:
    """Metadata v4 (the lowest version Kafka 4 still accepts): ``{"brokers": {id: (host, port)},
    "cluster_id", "controller_id", "topics": {name: {"error", "partitions": {i: (err, leader)}}}}``."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        names = list(topics)
        body = struct.pack(">i", len(names)) + b"".join(_str(t) for t in names)
    body += struct.pack(">b", 0)  # allow_auto_topic_creation = false
    r = _request(host, port, _API_METADATA, 4, body, timeout)
    r.take(">i")  # throttle_time_ms
    brokers: dict[int, tuple[str | None, int]] = {}
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        bhost = r.string()
        bport = r.take(">i")
        r.string()  # rack
        brokers[node_id] = (bhost, bport)
    cluster_id = r.string()
    controller_id = r.take(">i")
    out_topics: dict[str | None, dict[str, Any]] = {}
    for _ in range(r.take(">i")):
        err = r.take(">h")
        name = r.string()
        r.take(">b")  # is_internal
        parts: dict[int, tuple[int, int]] = {}
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





def create_topic(host: str, port: int, name: str, partitions: int = 3, replication_factor: int = 1,
                 config: Mapping[str, object] | None = None, *,
                 exist_ok: bool = True, timeout: float = 30.0) -> None:
    """Create a topic (CreateTopics v4) and wait until every partition has a leader.

    ``exist_ok`` ignores TOPIC_ALREADY_EXISTS.
    """
    cfg = dict(config or {})
    body = struct.pack(">i", 1) + _str(name) + struct.pack(">ih", partitions, replication_factor)
    body += struct.pack(">i", 0)  # no manual assignments
    body += struct.pack(">i", len(cfg)) + b"".join(
        _str(str(k)) + _str(None if v is None else str(v)) for k, v in cfg.items())
    body += struct.pack(">ib", int(timeout * 1000), 0)
    r = _request(host, port, _API_CREATE_TOPICS, 4, body, timeout + 5)
    r.take(">i")  # throttle
    for _ in range(r.take(">i")):
        tname, err, msg = r.string(), r.take(">h"), r.string()
        if err == 36 and exist_ok:
            continue
        if err:
            raise KafkaHarnessError(
                f"CreateTopics {tname!r} failed: {_ERRORS.get(err, err)} {msg or ''}")
    wait_for_topic(host, port, name, partitions=None if exist_ok else partitions, timeout=timeout)


def wait_for_topic(host: str, port: int, name: str, partitions: int | None = None,
                   timeout: float = 30.0) -> None:
    """Block until ``name`` exists and all its partitions have a leader."""
    deadline = time.monotonic() + timeout
    while True:
        t = metadata(host, port, [name])["topics"].get(name)
        if t and t["error"] == 0 and t["partitions"] and (
            partitions is None or len(t["partitions"]) == partitions
        ) and all(err == 0 and leader >= 0 for err, leader in t["partitions"].values()):
            return
        if time.monotonic() > deadline:
            raise KafkaHarnessError(f"topic {name!r} not ready after {timeout}s: {t}")
        time.sleep(0.05)


def delete_topic(host: str, port: int, name: str, timeout: float = 30.0) -> None:
    """Delete a topic (DeleteTopics v3); a missing topic is not an error."""
    body = struct.pack(">i", 1) + _str(name) + struct.pack(">i", int(timeout * 1000))
    r = _request(host, port, _API_DELETE_TOPICS, 3, body, timeout + 5)
    r.take(">i")
    for _ in range(r.take(">i")):
        tname, err = r.string(), r.take(">h")
        if err not in (0, 3):
            raise KafkaHarnessError(f"DeleteTopics {tname!r} failed: {_ERRORS.get(err, err)}")
