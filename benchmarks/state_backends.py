"""Which embedded store backs on-disk keyed state: puts/s, gets/s and peak RSS for N keys.

    python -m benchmarks.state_backends                 # 1M keys, every candidate, 2 rounds
    python -m benchmarks.state_backends --keys 200000 --rounds 1 --backend rocksdict

Each run of each candidate is a fresh interpreter (peak RSS = the child's VmHWM).
A run writes N keys in random order (16-byte keys, ~60-byte orjson values, the
shape of a per-key counter or last-seen record), reads them all back in another
random order (checking every value), and deletes 10% of them. RSS is the
child's peak above what it held before opening the store (the test data). Every candidate
is configured the way a state store uses it: the Kafka changelog is the
durable copy, so no fsync per write (RocksDB: WAL off; LMDB: ``sync=False``;
SQLite: ``synchronous=OFF``, no journal); writes are grouped per pipeline
batch of 1000, as the engine applies a batch's state changes together.

``streamflow-*`` candidates run the `streamflow.state` stores themselves, so
the numbers include their own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

BATCH = 1000


class Candidate(Protocol):
    def put_many(self, items: list[tuple[bytes, bytes]]) -> None: ...
    def get(self, key: bytes) -> bytes | None: ...
    def delete_many(self, keys: list[bytes]) -> None: ...
    def close(self) -> None: ...


class Rocks:
    def __init__(self, path: Path) -> None:
        from rocksdict import Options, Rdict, WriteBatch, WriteOptions

        self._batch = WriteBatch
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self.db = Rdict(str(path), opts)
        wo = WriteOptions()
        wo.disable_wal = True
        self.db.set_write_options(wo)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        wb = self._batch(raw_mode=True)
        for k, v in items:
            wb.put(k, v)
        self.db.write(wb)

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def delete_many(self, keys: list[bytes]) -> None:
        wb = self._batch(raw_mode=True)
        for k in keys:
            wb.delete(k)
        self.db.write(wb)

    def close(self) -> None:
        self.db.close()


class Lmdb:
    def __init__(self, path: Path) -> None:
        import lmdb

        self.env = lmdb.open(str(path), map_size=1 << 40, sync=False, metasync=False, writemap=True,
                             readahead=False)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            for k, v in items:
                txn.put(k, v)

    def get(self, key: bytes) -> bytes | None:
        with self.env.begin(buffers=False) as txn:
            return txn.get(key)  # type: ignore[no-any-return]

    def delete_many(self, keys: list[bytes]) -> None:
        with self.env.begin(write=True) as txn:
            for k in keys:
                txn.delete(k)

    def close(self) -> None:
        self.env.close()


class Sqlite:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path / "state.db", isolation_level=None)
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", items)
        self.db.execute("COMMIT")

    def get(self, key: bytes) -> bytes | None:
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def delete_many(self, keys: list[bytes]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM kv WHERE k = ?", [(k,) for k in keys])
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class StreamflowStore:
    """A `streamflow.state` store through its public calls (one ``set``/``get``/``delete`` per key)."""

    def __init__(self, path: Path, backend: str) -> None:
        from streamflow.state import open_store

        self.store = open_store(backend, path)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        with self.store.batch():
            for k, v in items:
                self.store.set(k, v)
        self.store.take_changes()  # what the changelog flush does after each batch

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)

    def delete_many(self, keys: list[bytes]) -> None:
        with self.store.batch():
            for k in keys:
                self.store.delete(k)
        self.store.take_changes()

    def close(self) -> None:
        self.store.close()


CANDIDATES: dict[str, Callable[[Path], Candidate]] = {
    "rocksdict": Rocks,
    "lmdb": Lmdb,
    "sqlite3": Sqlite,
    "streamflow-memory": lambda p: StreamflowStore(p, "memory"),
    "streamflow-disk": lambda p: StreamflowStore(p, "disk"),
}


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _status_kib(field: str) -> int:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of this process, in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _du(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())  # allocated, not apparent


def child(name: str, n: int, workdir: Path) -> dict[str, Any]:
    """One run of one candidate in this process: the numbers as a dict."""
    rng = random.Random(7)
    keys = [b"user-%010d....." % i for i in range(n)]
    values = {k: orjson.dumps({"count": i, "last": i * 3, "seen": "2024-01-01T00:00:00Z"})
              for i, k in enumerate(keys)}
    order = keys[:]
    rng.shuffle(order)
    baseline = _status_kib("VmRSS")  # the test data itself, the same for every candidate
    store = CANDIDATES[name](workdir / name)
    started = time.perf_counter()
    for chunk in _chunks(order, BATCH):
        store.put_many([(k, values[k]) for k in chunk])
    put_s = time.perf_counter() - started
    rng.shuffle(order)
    started = time.perf_counter()
    for k in order:
        if store.get(k) != values[k]:
            raise AssertionError(f"{name}: wrong value for {k!r}")
    get_s = time.perf_counter() - started
    gone = order[: n // 10]
    started = time.perf_counter()
    for chunk in _chunks(gone, BATCH):
        store.delete_many(chunk)
    delete_s = time.perf_counter() - started
    if n and store.get(gone[0]) is not None:
        raise AssertionError(f"{name}: a deleted key is still there")
    disk = _du(workdir / name)  # before close: a streamflow disk store removes its files
    store.close()
    return {"candidate": name, "keys": n, "puts_per_s": n / put_s, "gets_per_s": n / get_s,
            "deletes_per_s": len(gone) / delete_s if gone else 0.0,
            "rss_mib": (_status_kib("VmHWM") - baseline) / 1024, "disk_mib": disk / 2**20}


def run(names: list[str], n: int, rounds: int) -> list[dict[str, Any]]:
    """Every candidate ``rounds`` times, alternating, each in a fresh interpreter."""
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            work = Path(tempfile.mkdtemp(prefix="sf-state-bench-"))
            try:
                out = subprocess.run([sys.executable, "-m", "benchmarks.state_backends", "--child", name,
                                      "--keys", str(n), "--workdir", str(work)],
                                     capture_output=True, text=True, check=False, env=os.environ)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if out.returncode != 0:
                print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            samples[name].append(json.loads(out.stdout))
    rows = []
    for name, runs in samples.items():
        if runs:
            rows.append({key: statistics.median(r[key] for r in runs) if key != "candidate" else name
                         for key in runs[0]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", action="append", choices=sorted(CANDIDATES))
    parser.add_argument("--child", choices=sorted(CANDIDATES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.keys, args.workdir)))
        return 0
    rows = run(args.backend or list(CANDIDATES), args.keys, args.rounds)
    print(f"{'candidate':<20} {'keys':>9} {'puts/s':>10} {'gets/s':>10} {'deletes/s':>10} "
          f"{'RSS MiB':>8} {'disk MiB':>9}")
    for r in rows:
        print(f"{r['candidate']:<20} {r['keys']:>9} {r['puts_per_s']:>10,.0f} {r['gets_per_s']:>10,.0f} "
              f"{r['deletes_per_s']:>10,.0f} {r['rss_mib']:>8.0f} {r['disk_mib']:>9.0f}")
    return 0 if len(rows) == len(args.backend or CANDIDATES) else 1


if __name__ == "__main__":
    sys.exit(main())
