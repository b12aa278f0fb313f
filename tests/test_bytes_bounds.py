"""Contract 1 in bytes: channels hold at most ``max_bytes``, file batches end at ``batch_bytes``, and a
line longer than ``max_frame_bytes`` goes to the error policy without being held whole."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from streamflow import Pipeline
from streamflow.codecs.framing import LineSplitter, Oversized
from streamflow.connectors.files_source import FileSource
from streamflow.connectors.memory import MemorySink
from streamflow.core.batch import Batch
from streamflow.core.channel import Channel
from streamflow.core.message import Message
from streamflow.core.runner import EXIT_OK, Runner
from streamflow.core.stage import ComponentConfig, Sink

MIB = 1 << 20


def blob_batch(size: int, n: int = 1) -> Batch:
    return Batch([Message(bytes(size)) for _ in range(n)])


async def test_put_waits_when_bytes_full_but_a_larger_batch_passes_an_empty_channel() -> None:
    ch = Channel("c", max_batches=10, max_events=1000, max_bytes=1000)
    await ch.put(blob_batch(600))
    blocked = asyncio.create_task(ch.put(blob_batch(600)))
    await asyncio.sleep(0.01)
    assert not blocked.done() and ch.bytes == 600
    await ch.get()
    await asyncio.wait_for(blocked, 1)
    await ch.get()
    await ch.put(blob_batch(5000))  # larger than max_bytes: alone in an empty channel
    assert ch.bytes == 5000
    blocked = asyncio.create_task(ch.put(blob_batch(1)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    await ch.get()
    await asyncio.wait_for(blocked, 1)
    assert ch.bytes == 1 and ch.peak_bytes == 5000


def test_batch_size_is_the_raw_bytes_and_derived_batches_keep_it() -> None:
    b = Batch([Message({"a": 1}, raw=b"x" * 10), Message("abc"), Message(b"12345"), Message(7)])
    assert b.size() == 18
    assert b.derive(b.messages[:1]).nbytes == 18
    assert Batch.merge([b, blob_batch(2)]).nbytes == 20


def test_line_splitter_passes_over_a_line_longer_than_max_frame() -> None:
    splitter = LineSplitter(max_frame=100)
    frames: list[bytes] = []
    data = b"short\n" + b"x" * 1000 + b"\nafter\n" + b"y" * 300
    for i in range(0, len(data), 64):  # the long line arrives over many chunks
        frames += splitter.feed(data[i:i + 64])
        assert splitter.pending <= 100 + 64 or splitter.oversized
    rest = splitter.rest()
    assert frames[0] == b"short" and frames[2] == b"after"
    assert type(frames[1]) is Oversized and frames[1].size == 1000 and frames[1] == b"x" * len(frames[1])
    assert type(rest) is Oversized and rest.size == 300
    assert splitter.oversized == 2


class SizeRecordingSink(Sink[ComponentConfig]):
    """Slow sink recording the bytes of every batch it gets and the bytes queued in every channel."""

    def __init__(self) -> None:
        super().__init__()
        self.runner: Runner | None = None
        self.batch_bytes: list[int] = []
        self.values: list[Any] = []
        self.peak_channel_bytes = 0

    async def write(self, batch: Batch) -> None:
        await asyncio.sleep(0.005)
        assert self.runner is not None
        self.peak_channel_bytes = max([self.peak_channel_bytes, *(ch.bytes for ch in self.runner.channels)])
        self.batch_bytes.append(sum(len(m.raw or b"") for m in batch.messages))
        self.values += [m.value["id"] for m in batch.messages]


def test_a_file_of_large_lines_moves_in_byte_bounded_batches_and_channels(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    line = orjson.dumps({"id": 0, "blob": "a" * MIB})
    with path.open("wb") as f:
        for i in range(40):
            f.write(line.replace(b'"id":0', b'"id":%d' % i) + b"\n")
    sink = SizeRecordingSink()
    p = (Pipeline("big", channel={"max_bytes": 3 * MIB})
         .source("file", path=str(path), codec="raw", batch_bytes=2 * MIB).transform("parse").sink(sink))
    runner = sink.runner = Runner(p, handle_signals=False)
    result = asyncio.run(runner.run())
    assert result.exit_code == EXIT_OK and sink.values == list(range(40))
    # a batch ends once it holds batch_bytes: 2 lines of 1 MiB, not all 40 (batch_size 1000)
    assert max(sink.batch_bytes) <= 2 * (len(line) + 1)
    assert all(ch.peak_bytes <= 3 * MIB for ch in runner.channels)
    assert sink.peak_channel_bytes > 0


def test_a_line_longer_than_max_frame_bytes_is_dead_lettered_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "' + b"z" * 500_000 + b'"}\n{"id": 3}\n')
    dlq = MemorySink()
    sink = MemorySink()
    src = FileSource(path=str(path), max_frame_bytes=100_000, chunk_size=4096, on_error="dead_letter",
                     checkpoint=str(tmp_path / "pos.json"))
    result = Pipeline("cut").source(src).sink(sink).dead_letter(dlq).run(handle_signals=False)
    assert result.exit_code == EXIT_OK
    assert [v["id"] for v in sink.values] == [1, 3]
    [record] = dlq.values
    assert record["source"]["offset"] == 2
    assert "500010 bytes is longer than max_frame_bytes (100000)" in record["error"]
    assert record["payload"].startswith('{"id": "zzz') and len(record["payload"]) == 64 << 10
    saved = orjson.loads((tmp_path / "pos.json").read_bytes())
    assert (saved["offset"], saved["line"]) == (path.stat().st_size, 3)  # positions count the whole line


STDIN_SCRIPT = """
import sys
from streamflow import Pipeline
from streamflow.core.stage import ComponentConfig, Sink

class Sizes(Sink[ComponentConfig]):
    async def write(self, batch):
        print(len(batch), sum(len(m.value["s"]) for m in batch.messages))

r = (Pipeline("stdin-bytes").source("stdin", batch_bytes=2500, max_frame_bytes=5000, on_error="skip")
     .sink(Sizes()).run(handle_signals=False))
print(r.summary(), file=sys.stderr)
sys.exit(r.exit_code)
"""


def test_stdin_batches_end_at_batch_bytes_and_an_oversized_line_is_skipped() -> None:
    line = orjson.dumps({"s": "x" * 1000}) + b"\n"
    data = line * 3 + orjson.dumps({"s": "y" * 10_000}) + b"\n" + line * 2
    proc = subprocess.run([sys.executable, "-c", STDIN_SCRIPT], input=data, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    batches = [tuple(map(int, row.split())) for row in proc.stdout.decode().splitlines()]
    assert sum(n for n, _ in batches) == 5 and all(n <= 3 for n, _ in batches)
    assert all(size < 2500 + 1100 for _, size in batches)  # a batch ends at the line that reaches 2500 bytes
    assert b"FrameTooLarge: a frame of 10008 bytes" in proc.stderr
