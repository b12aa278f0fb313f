"""A second Kafka-compatible broker, lighter than a JVM: franz-go's kfake, built with Go and run on 127.0.0.1.

``kfake/main.go`` (beside this file) starts kfake, franz-go's Kafka-compatible
cluster written in Go, as one broker that keeps its data in memory. It speaks
what aiokafka needs (metadata, produce, fetch, list offsets, create/delete
topics, consumer groups and their commits, idempotent and transactional
producers), and it costs a fraction of a JVM broker's CPU, so a benchmark on a
small machine measures the clients, not the broker. ``refuse_idempotence``
makes it answer every InitProducerId with UNKNOWN_SERVER_ERROR, as some
Kafka-compatible brokers answer aiokafka's version 0 of that request.

The binary is built once per source and Go version into the user's cache
(``$XDG_CACHE_HOME/streamflow`` or ``~/.cache/streamflow``; override with
``STREAMFLOW_KFAKE_CACHE``); the Go modules come from the Go module proxy
(``go.sum`` pins them). Needs ``go`` 1.26 or newer on ``PATH``. Command line::

    python tests/kafka/kfake_broker.py               # run one on a free port until Ctrl-C/SIGTERM
    python tests/kafka/kfake_broker.py --build-only  # only build (CI warm-up)

This module uses the standard library only: the benchmarks load it by path.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from types import TracebackType

SOURCE = Path(__file__).resolve().parent / "kfake"


class KfakeError(RuntimeError):
    """kfake cannot be built or did not start; the message says why and what to do."""


def find_go() -> str:
    """The ``go`` command, or `KfakeError` saying how to get one."""
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    if go is None:
        raise KfakeError("kfake needs Go 1.26 or newer to build (`go` is not on PATH): install Go (its release "
                         "tarball into /usr/local/go, or a package; a Go >= 1.21 fetches the 1.26 toolchain "
                         "itself); the modules come from the Go module proxy")
    return go


def default_cache_dir() -> Path:
    env = os.environ.get("STREAMFLOW_KFAKE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamflow"


def build(cache_dir: Path | None = None, log: bool = False) -> Path:
    """The kfake binary, built into ``cache_dir`` unless this source and Go version were built already."""
    go = find_go()
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(version.encode())
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((SOURCE / name).read_bytes())
    binary = (cache_dir or default_cache_dir()) / f"kfake-{digest.hexdigest()[:16]}" / "kfake"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    if log:
        print(f"building kfake into {binary} (go build, modules from the Go module proxy) …", file=sys.stderr)
    partial = binary.with_name(f"kfake.{os.getpid()}.tmp")
    done = subprocess.run([go, "build", "-trimpath", "-mod=readonly", "-o", str(partial), "."], cwd=SOURCE,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise KfakeError(f"go build of {SOURCE} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    partial.replace(binary)
    return binary


def api_versions_answer(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a Kafka broker at ``host:port`` answers an ApiVersions (v0) request."""
    client_id = b"streamflow-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(8)
    except OSError:
        return False
    return len(head) == 8 and struct.unpack(">ii", head)[1] == 1


class KfakeBroker:
    """One kfake broker on 127.0.0.1, shaped like `KafkaBroker`: `start`, `bootstrap`, `close`, ``with``."""

    def __init__(self, *, port: int = 0, partitions: int = 3, refuse_idempotence: bool = False,
                 startup_timeout: float = 30.0, cache_dir: Path | None = None) -> None:
        self.port = port
        self.partitions = partitions
        self.refuse_idempotence = refuse_idempotence
        self.startup_timeout = startup_timeout
        self.cache_dir = cache_dir
        self.proc: subprocess.Popen[str] | None = None
        self.last_start_seconds: float | None = None
        self._stderr = tempfile.TemporaryFile(mode="w+")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> KfakeBroker:
        """Build if needed, launch, and wait until the broker answers ApiVersions."""
        binary = build(self.cache_dir)
        started = time.monotonic()
        cmd = [str(binary), "-port", str(self.port), "-partitions", str(self.partitions)]
        if self.refuse_idempotence:
            cmd.append("-refuse-idempotence")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     stdin=subprocess.DEVNULL)
        self.port = int(self._first_line().rpartition(":")[2])
        while not api_versions_answer("127.0.0.1", self.port):
            if time.monotonic() - started > self.startup_timeout or not self.is_running():
                self.close()
                raise KfakeError(f"kfake at {self.bootstrap} does not answer: {self.tail_log()}")
            time.sleep(0.05)
        self.last_start_seconds = time.monotonic() - started
        return self

    def _first_line(self) -> str:
        """The address kfake prints once it listens (it chooses the port when given 0)."""
        assert self.proc is not None and self.proc.stdout is not None
        stdout, lines = self.proc.stdout, []
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if not lines or ":" not in lines[0]:
            self.close()
            raise KfakeError(f"kfake did not start within {self.startup_timeout:g}s: {self.tail_log()}")
        return lines[0].strip()

    def tail_log(self, chars: int = 4000) -> str:
        """The end of kfake's stderr (for failure reports)."""
        self._stderr.seek(0)
        return self._stderr.read()[-chars:] or "(no output)"

    def close(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 10 s); its data is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> KfakeBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"KfakeBroker({self.bootstrap}, {state})"


def main(argv: list[str] | None = None) -> int:
    """Run kfake on a free port (or ``--port``) until Ctrl-C/SIGTERM, or only build it."""
    ap = argparse.ArgumentParser(description="Run franz-go's kfake (a Kafka-compatible broker) on 127.0.0.1.")
    ap.add_argument("--build-only", action="store_true", help="only build the binary into the cache, then exit")
    ap.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    ap.add_argument("--partitions", type=int, default=3, help="partitions of an auto-created topic")
    ap.add_argument("--refuse-idempotence", action="store_true",
                    help="answer every InitProducerId with UNKNOWN_SERVER_ERROR")
    args = ap.parse_args(argv)
    if args.build_only:
        print(build(log=True))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with KfakeBroker(port=args.port, partitions=args.partitions, refuse_idempotence=args.refuse_idempotence) as b:
        print(b.bootstrap, flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
