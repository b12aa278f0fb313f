"""What the tests' own servers (PostgreSQL, Redis) share: a free port on 127.0.0.1, and stopping the process."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Send ``sig`` to a server still running and wait for it; SIGKILL if it does not exit in ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
