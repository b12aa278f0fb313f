"""A real PostgreSQL server for the tests: Debian's binaries, a fresh data directory, a free port on 127.0.0.1.

``initdb`` and ``postgres`` refuse to run as root, so as root (CI) they run
as the ``postgres`` user the Debian package creates (``subprocess``'s
``user=``: the server is our child, and a signal reaches it), in a
directory that user owns.
The server is stopped (fast shutdown) and its directory removed by `stop`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.local_servers import free_port, stop_process

USER, PASSWORD, DATABASE = "streamflow", "s3cret", "postgres"


def bin_dir() -> Path | None:
    """The directory of Debian's newest PostgreSQL binaries (None: not installed)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


#: Mark of the test modules that need the server. They fail, not skip, where PostgreSQL is not installed
#: (`PostgresServer` says so), as the Kafka and Redis tests do: CI must never pass without them.
needs_postgres = pytest.mark.postgres


class PostgresServer:
    """One throwaway server; `dsn` reaches it as the superuser ``streamflow`` (password ``s3cret``)."""

    def __init__(self) -> None:
        bindir = bin_dir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="streamflow-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def _user(self) -> str | None:
        """Whom the server runs as: ``postgres`` when we are root, else ourselves."""
        return "postgres" if self._as_root else None

    def start(self) -> PostgresServer:
        data, pwfile = self.root / "data", self.root / "pw"
        pwfile.write_text(PASSWORD)
        if self._as_root:
            user = pwd.getpwnam("postgres")
            for path in (self.root, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run([str(self.bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, user=self._user, cwd=self.root)
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - the server's output, kept until stop
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
             "-c", "fsync=off", "-c", "max_connections=50"],
            stdout=log, stderr=subprocess.STDOUT, user=self._user, cwd=self.root)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'server.log').read_text()[-2000:]}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not become ready in time")

    def stop(self) -> None:
        stop_process(self.process, signal.SIGINT)  # SIGINT: fast shutdown
        shutil.rmtree(self.root, ignore_errors=True)
