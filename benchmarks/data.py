"""The benchmark data: deterministic events, the lookup table, the reference transform and output digests.

Every variant of a workload reads the same events and must produce the same
records; the harness checks that with `Digest`, an order-independent summary
(count, distinct ids, checksum of each record's canonical JSON) computed the
same way for the expected output and for what a variant wrote.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

#: Bump when the event shape changes: cached inputs are keyed by it.
DATA_VERSION = 1
#: Keys of the lookup table (events reference them through ``user_id``).
USERS = 1000
KINDS = ("click", "view", "purchase", "signup", "logout")
SEGMENTS = ("free", "trial", "pro", "enterprise")
REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "ap-south", "sa-east")


def make_event(i: int) -> dict[str, Any]:
    """Event number ``i``: ~90 bytes of JSON, the same on every run."""
    return {
        "id": i,
        "user_id": (i * 7919) % USERS,
        "kind": KINDS[i % 5],
        "amount": ((i * 104729) % 10_000) / 100,
        "ts": 1_700_000_000_000 + i * 3,
        "page": f"/p/{(i * 31) % 500}",
    }


def event_key(i: int) -> bytes:
    """The Kafka key of event ``i``: its ``user_id`` as ASCII digits (events are partitioned by user)."""
    return b"%d" % ((i * 7919) % USERS)


def keep(value: dict[str, Any]) -> bool:
    """The filter of every enrich workload: drops amounts below 10 (exactly 10% of the events)."""
    return value["amount"] >= 10.0


def table_rows() -> list[dict[str, Any]]:
    """The lookup table: one row per user with the two fields the enrich step adds."""
    return [{"user_id": k, "segment": SEGMENTS[k % 4], "region": REGIONS[(k * 7) % 6]} for k in range(USERS)]


def table_index() -> dict[int, dict[str, Any]]:
    """user_id -> the fields to merge (what a hand-written loop keeps in a dict)."""
    return {r["user_id"]: {"segment": r["segment"], "region": r["region"]} for r in table_rows()}


def enrich_reference(value: dict[str, Any], index: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The expected output record of a kept event."""
    out = dict(value)
    out.update(index[value["user_id"]])
    return out


# -- cache --------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where generated inputs are kept between runs (``STREAMFLOW_BENCH_CACHE``)."""
    base = os.environ.get("STREAMFLOW_BENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "streamflow", "bench")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def events_file(n: int) -> Path:
    """A JSON-lines file of events 0..n-1, generated once into the cache dir."""
    path = cache_dir() / f"events-v{DATA_VERSION}-{n}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        dumps, opt = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        with open(tmp, "wb") as f:
            step = 50_000
            for start in range(0, n, step):
                f.write(b"".join([dumps(make_event(i), option=opt) for i in range(start, min(n, start + step))]))
        os.replace(tmp, path)
    return path


def table_file() -> Path:
    """The lookup table as a JSON file (a list of objects), for the `enrich` transform."""
    path = cache_dir() / f"users-v{DATA_VERSION}.json"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(orjson.dumps(table_rows()))
        os.replace(tmp, path)
    return path


# -- digests ------------------------------------------------------------------------
@dataclass
class Digest:
    """Order-independent summary of a set of output records."""

    count: int = 0
    distinct_ids: int = 0
    id_sum: int = 0
    checksum: int = 0

    def mismatch(self, expected: Digest) -> str | None:
        """What differs from ``expected`` (None if nothing)."""
        diffs = [f"{k}: got {v}, expected {getattr(expected, k)}"
                 for k, v in asdict(self).items() if v != getattr(expected, k)]
        return "; ".join(diffs) or None

    def to_json(self) -> dict[str, int]:
        return asdict(self)


class DigestBuilder:
    """Accumulates a `Digest` record by record (records as dicts or JSON bytes)."""

    __slots__ = ("count", "ids", "id_sum", "checksum")

    def __init__(self) -> None:
        self.count = 0
        self.ids: set[int] = set()
        self.id_sum = 0
        self.checksum = 0

    def add_records(self, records: Iterable[dict[str, Any]]) -> None:
        dumps, opt, crc, ids = orjson.dumps, orjson.OPT_SORT_KEYS, zlib.crc32, self.ids
        total = 0
        n = 0
        for r in records:
            total += crc(dumps(r, option=opt))
            ids.add(r["id"])
            self.id_sum += r["id"]
            n += 1
        self.count += n
        self.checksum = (self.checksum + total) & 0xFFFF_FFFF_FFFF

    def add_lines(self, lines: Iterable[bytes]) -> None:
        loads = orjson.loads
        self.add_records(loads(line) for line in lines if line.strip())

    def digest(self) -> Digest:
        return Digest(self.count, len(self.ids), self.id_sum, self.checksum)


def file_digest(path: str | os.PathLike[str]) -> Digest:
    """Digest of a JSON-lines output file."""
    b = DigestBuilder()
    with open(path, "rb") as f:
        rest = b""
        while chunk := f.read(1 << 22):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            b.add_lines(lines)
        if rest.strip():
            b.add_lines([rest])
    return b.digest()


def expected_enrich_digest(n: int) -> Digest:
    """Digest of the correct output of the enrich workloads over events 0..n-1 (cached)."""
    path = cache_dir() / f"expected-enrich-v{DATA_VERSION}-{n}.json"
    if path.exists():
        return Digest(**orjson.loads(path.read_bytes()))
    index = table_index()
    b = DigestBuilder()
    b.add_records(enrich_reference(e, index) for e in iter_events(n) if keep(e))
    d = b.digest()
    path.write_bytes(orjson.dumps(d.to_json()))
    return d


def iter_events(n: int, start: int = 0) -> Iterator[dict[str, Any]]:
    return (make_event(i) for i in range(start, n))
