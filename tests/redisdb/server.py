"""A real redis-server for the tests: Debian's binary, a temporary directory, a free port on 127.0.0.1.

Persistence is off (no RDB snapshots, no AOF): every server starts empty and
leaves nothing behind. Without ``/usr/bin/redis-server`` (``apt-get install
redis-server``) starting one raises, so the Redis tests fail rather than skip.
With ``tls`` (certificate, key and CA files) the server listens with TLS only and
asks clients for a certificate signed by the CA (mutual TLS).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.local_servers import free_port, stop_process

PASSWORD = "r3dis-s3cret"


def binary() -> str:
    """The redis-server binary; a clear error when it is not installed."""
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                             else None)
    if found is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return found


class RedisServer:
    """One throwaway server; `url` reaches it (password `PASSWORD` when started with ``password=True``)."""

    def __init__(self, *, password: bool = False, tls: tuple[Path, Path, Path] | None = None) -> None:
        self.binary = binary()
        self.root = Path(tempfile.mkdtemp(prefix="streamflow-redis-"))
        self.port = free_port()
        self.password = PASSWORD if password else None
        self.tls = tls  # (certificate, key, CA) files
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--bind", "127.0.0.1", "--dir", str(self.root), "--save", "", "--appendonly", "no",
                "--protected-mode", "no", "--logfile", str(self.root / "server.log")]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "yes"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=self.root)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                log = self.root / "server.log"
                raise RuntimeError(f"redis-server exited: {log.read_text()[-2000:] if log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not accept connections in time")

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.root, ignore_errors=True)
