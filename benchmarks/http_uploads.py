"""http-uploads: 300 concurrent 1 MB uploads into a slow sink — peak RSS and /healthz while it lasts.

A child process runs ``http source → slow sink`` (the sink sleeps per batch)
with the operations server; the parent posts N bodies of ~1 MB of JSON lines
at once, each client retrying on 503 after its ``Retry-After``, while a probe
asks ``/healthz`` every 50 ms. Reported per variant: the child's peak RSS
(``VmHWM``), the slowest ``/healthz`` answer, answers by status, and that
every event arrived. Variants: ``budget`` (the default ``max_inflight_bytes``,
32 MiB), ``budget-16m`` and ``unbounded`` (a budget of 4 GiB: what the source
did before it had one). They alternate over the rounds. The default variant
must stay under `RSS_BOUND_MIB` and answer ``/healthz`` within
`HEALTHZ_BOUND_S` (a liveness probe's timeout); ``within_bounds`` says so.

    python -m benchmarks.http_uploads [--uploads 300] [--rounds 2] [--variant budget --variant unbounded]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import aiohttp

#: Bytes of each upload (JSON lines of ~200-byte events).
BODY_BYTES = 1_000_000
#: ``max_inflight_bytes`` of each variant (None: the source's default).
VARIANTS: dict[str, int | None] = {"budget": None, "budget-16m": 16 * 1024**2, "unbounded": 4 * 1024**3}
#: The stated bounds of the default variant: peak RSS (MiB) and the slowest /healthz (s, the probe's timeout).
RSS_BOUND_MIB = 384.0
HEALTHZ_BOUND_S = 3.0


def body(upload: int) -> tuple[bytes, int]:
    """One upload's body and its event count."""
    pad = "x" * 160
    lines = []
    size = 0
    i = 0
    while size < BODY_BYTES:
        line = json.dumps({"upload": upload, "i": i, "pad": pad}).encode() + b"\n"
        lines.append(line)
        size += len(line)
        i += 1
    return b"".join(lines), i


# -- the child: the pipeline under test ------------------------------------------------------------
def child(max_inflight: int | None, sink_delay: float) -> None:
    """Run the pipeline; print its ports as one JSON line; exit on stdin EOF with the event count."""
    from streamflow import Pipeline
    from streamflow.core.batch import Batch
    from streamflow.core.runner import Runner
    from streamflow.core.stage import Sink
    from streamflow.observability.server import serve

    class SlowSink(Sink):
        def __init__(self) -> None:
            super().__init__(name="slow")
            self.events = 0

        async def write(self, batch: Batch) -> None:
            await asyncio.sleep(sink_delay)
            self.events += len(batch.messages)

    async def main() -> None:
        options: dict[str, Any] = {"port": 0, "timeout": 30.0, "ack_timeout": 600.0}
        if max_inflight is not None:
            options.update(max_inflight_bytes=max_inflight, max_body_bytes=min(max_inflight, 2 * BODY_BYTES),
                           max_connections=10_000)
        else:
            options.update(max_connections=10_000)
        sink = SlowSink()
        ops_port: list[int] = []
        pipeline = Pipeline("uploads").source("http", **options).sink(sink)
        runner = Runner(pipeline, handle_signals=False,
                        watchers=[lambda r: serve(r, port=0, on_bound=ops_port.append)])
        task = asyncio.create_task(runner.run())
        source = pipeline.sources[0]
        while not (source.ready and ops_port):
            await asyncio.sleep(0.01)
        print(json.dumps({"port": source.port, "ops": ops_port[0]}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        runner.stop()
        await task
        print(json.dumps({"events": sink.events}), flush=True)

    asyncio.run(main())


# -- the parent: the load and the measurements ---------------------------------------------------
async def upload(session: aiohttp.ClientSession, url: str, data: bytes, statuses: Counter[int]) -> None:
    """POST until 200, sleeping the Retry-After of each 503."""
    while True:
        async with session.post(url, data=data, headers={"Content-Type": "application/x-ndjson"}) as resp:
            await resp.read()
            statuses[resp.status] += 1
            if resp.status == 200:
                return
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))


def probe(port: int, latencies: list[float], stop: threading.Event) -> None:
    """GET /healthz every 50 ms on a thread of its own (the upload loop's delays are not counted)."""
    while not stop.is_set():
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        conn.close()
        latencies.append(time.monotonic() - started)
        stop.wait(0.05)


def peak_rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_variant(name: str, uploads: int, sink_delay: float) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.http_uploads", "--child",
                             json.dumps({"max_inflight": VARIANTS[name], "sink_delay": sink_delay})],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    ports = json.loads(proc.stdout.readline())
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    stop = threading.Event()
    bodies = [body(i) for i in range(uploads)]
    connector = aiohttp.TCPConnector(limit=0)
    started = time.monotonic()
    prober = threading.Thread(target=probe, args=(ports["ops"], latencies, stop))
    prober.start()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as s:
        url = f"http://127.0.0.1:{ports['port']}/"
        await asyncio.gather(*(upload(s, url, data, statuses) for data, _ in bodies))
    seconds = time.monotonic() - started
    stop.set()
    prober.join()
    rss = peak_rss_mib(proc.pid)
    proc.stdin.close()
    events = json.loads(proc.stdout.readline())["events"]
    proc.wait(60)
    expected = sum(n for _, n in bodies)
    return {"variant": name, "uploads": uploads, "peak_rss_mib": round(rss, 1),
            "healthz_max_s": round(max(latencies), 3), "healthz_p50_s": round(statistics.median(latencies), 4),
            "answers": {str(k): v for k, v in sorted(statuses.items())}, "seconds": round(seconds, 1),
            "events_ok": events == expected,
            "within_bounds": rss <= RSS_BOUND_MIB and max(latencies) < HEALTHZ_BOUND_S if name == "budget" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--uploads", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sink-delay", type=float, default=0.02, help="seconds the sink sleeps per batch")
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    args = ap.parse_args()
    if args.child:
        opts = json.loads(args.child)
        child(opts["max_inflight"], opts["sink_delay"])
        return
    for _ in range(args.rounds):
        for name in args.variant or list(VARIANTS):
            print(json.dumps(asyncio.run(run_variant(name, args.uploads, args.sink_delay))), flush=True)


if __name__ == "__main__":
    main()
