"""The io-enrich "remote service": a TCP server in its own process that answers each request after exactly
``latency`` seconds, and the asyncio client every variant calls it with.

Why a process and not ``asyncio.sleep``: uvloop's timers have millisecond
resolution, so a 5 ms sleep lasts 5.7 ms on average and 64 concurrent sleeps
with no work at all reach only ~10,100 calls/s against the 12,800/s of 64 / 5 ms:
the benchmark would measure the timer, not the engine. Here the reply is
scheduled by the server and wakes the caller through its socket, like any
remote call. Even ``select``/``time.sleep`` overshoot a 5 ms timeout by
0.25-0.35 ms on the benchmark machine, so the server wakes `EARLY` seconds
before the next answer is due and polls (without blocking) until it is.

Protocol, one line each way: ``<request id> <key>\\n`` -> ``<request id> <score>\\n``,
where the score of key ``k`` is ``k % 97``.

The server listens on 127.0.0.1 only and stops by itself when its stdin closes
(the process that started it is gone) or after ``idle_limit`` seconds without a
request::

    python -m benchmarks.service --latency 0.005   # prints its port, then serves
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

#: Seconds without any request after which the server exits.
IDLE_LIMIT = 600.0
#: How long before an answer is due the server stops blocking in ``select`` and polls instead.
EARLY = 0.0006


def serve(latency: float, idle_limit: float = IDLE_LIMIT) -> None:
    """Run the server (blocking): print the port, answer every line after ``latency`` seconds."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    stdin = sys.stdin.fileno()
    buffers: dict[socket.socket, bytes] = {}
    due: list[tuple[float, int, socket.socket, bytes]] = []  # (deadline, seq, conn, reply)
    seq = 0
    last_request = time.monotonic()
    while True:
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, conn, reply = heapq.heappop(due)
            if conn in buffers:
                conn.sendall(reply)
        if not due and now - last_request > idle_limit:
            return
        timeout = max(0.0, due[0][0] - now - EARLY) if due else 1.0
        readable, _, _ = select.select([listener, stdin, *buffers], [], [], timeout)
        now = time.monotonic()
        for r in readable:
            if r is listener:
                conn, _ = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buffers[conn] = b""
            elif r == stdin:
                if not os.read(stdin, 4096):
                    return  # the parent is gone
            else:
                data = r.recv(65536)
                if not data:
                    del buffers[r]
                    r.close()
                    continue
                *lines, rest = (buffers[r] + data).split(b"\n")
                buffers[r] = rest
                last_request = now
                for line in lines:
                    rid, key = line.split()
                    seq += 1
                    heapq.heappush(due, (now + latency, seq, r, b"%s %d\n" % (rid, int(key) % 97)))


class ServiceProcess:
    """The server running in a child process (started by the harness, shared by every run)."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.service", "--latency", str(latency)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ServiceClient:
    """Calls the service over one connection; concurrent calls are matched to replies by request id."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[asyncio.Future[int], float]] = {}
        self._next = 0
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        #: Calls answered and their summed latency (seconds), to report the service's real latency.
        self.calls = 0
        self.latency_sum = 0.0

    async def connect(self, port: int) -> None:
        reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        clock = time.perf_counter
        try:
            while line := await reader.readline():
                rid, score = line.split()
                fut, sent = self._pending.pop(int(rid))
                self.calls += 1
                self.latency_sum += clock() - sent
                if not fut.done():
                    fut.set_result(int(score))
        finally:
            for fut, _ in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the service closed the connection"))

    async def call(self, key: int) -> int:
        """One request for ``key``; returns its score once the service answers."""
        assert self._writer is not None, "connect() first"
        rid = self._next
        self._next += 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = (fut, time.perf_counter())
        self._writer.write(b"%d %d\n" % (rid, key))
        return await fut

    def mean_latency_ms(self) -> float:
        return self.latency_sum / self.calls * 1000 if self.calls else 0.0

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)


def call_blocking(sock: socket.socket, key: int) -> int:
    """One call for ``key`` on a plain blocking socket (the synchronous reference)."""
    sock.sendall(b"0 %d\n" % key)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError("the service closed the connection")
        data += chunk
    return int(data.split()[1])


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.005, help="seconds before each answer")
    ap.add_argument("--idle-limit", type=float, default=IDLE_LIMIT, help="exit after this long without requests")
    args = ap.parse_args(argv)
    serve(args.latency, args.idle_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
