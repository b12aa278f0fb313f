"""file sink: codecs, flush policies (and what they acknowledge), rotation, directories, torn lines."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.connectors.files_sink import FileSink
from streamflow.connectors.generator import GeneratorSource
from streamflow.connectors.memory import MemorySource
from streamflow.core.runner import EXIT_OK, Runner


def run(p: Pipeline):
    return p.run(handle_signals=False)


def lines_of(*paths: Path) -> list[bytes]:
    return [line for p in paths for line in p.read_bytes().splitlines()]


def test_jsonl_exact_and_bytes_written_as_they_are(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    values = [{"id": 1, "t": "é"}, [1, 2], "text", b'{"already":"json"}', None, {"b": b"xy"}]
    r = run(Pipeline("t").source(MemorySource(values=values, batch_size=2)).sink(FileSink(path=str(out))))
    assert r.exit_code == EXIT_OK
    assert out.read_bytes() == (b'{"id":1,"t":"\xc3\xa9"}\n[1,2]\n"text"\n{"already":"json"}\nnull\n'
                                b'{"b":"xy"}\n')


def test_text_codec(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    run(Pipeline("t").source(MemorySource(values=["a", b"b", 3, {"k": 1}]))
        .sink(FileSink(path=str(out), codec="text")))
    assert out.read_bytes() == b'a\nb\n3\n{"k":1}\n'


def test_csv_header_once_from_first_record_and_from_fields(tmp_path: Path) -> None:
    values = [{"id": i, "name": f"n,{i}", "extra": None} for i in range(25)]
    auto, chosen = tmp_path / "auto.csv", tmp_path / "chosen.csv"
    run(Pipeline("t").source(MemorySource(values=values, batch_size=4))
        .sink(FileSink(path=str(auto), codec="csv", name="auto"))
        .sink(FileSink(path=str(chosen), codec="csv", fields=["name", "id"], name="chosen")))
    rows = list(csv.reader(io.StringIO(auto.read_text())))
    assert rows[0] == ["id", "name", "extra"] and len(rows) == 26
    assert rows[1:] == [[str(i), f"n,{i}", ""] for i in range(25)]
    rows = list(csv.reader(io.StringIO(chosen.read_text())))
    assert rows[0] == ["name", "id"] and rows[1:] == [[f"n,{i}", str(i)] for i in range(25)]
    # appending to an existing csv file adds no second header
    run(Pipeline("t").source(MemorySource(values=[{"name": "z", "id": 99}]))
        .sink(FileSink(path=str(chosen), codec="csv", fields=["name", "id"])))
    rows = list(csv.reader(io.StringIO(chosen.read_text())))
    assert rows.count(["name", "id"]) == 1 and rows[-1] == ["z", "99"]


def test_mkdir_and_torn_last_line_repair(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out.jsonl"
    with pytest.raises(FileNotFoundError):  # without mkdir the missing directory is an error
        asyncio.run(_open_without_mkdir(out))
    run(Pipeline("t").source(MemorySource(values=[1])).sink(FileSink(path=str(out), mkdir=True)))
    with open(out, "ab") as f:
        f.write(b'{"torn": ')  # what a kill -9 in the middle of a write leaves
    run(Pipeline("t").source(MemorySource(values=[2, 3])).sink(FileSink(path=str(out), fsync=True)))
    assert out.read_bytes() == b'1\n{"torn": \n2\n3\n'


async def _open_without_mkdir(path: Path) -> None:
    from streamflow.core.stage import StageContext
    from streamflow.core.stats import StageStats

    sink = FileSink(path=str(path))
    await sink.open(StageContext("t", "file", StageStats("file", "sink")))


async def test_interval_flush_acknowledges_only_flushed_batches(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    n = 1500
    src = MemorySource(values=[{"i": i} for i in range(n)], batch_size=10)
    sink = FileSink(path=str(out), flush={"interval": 0.2})

    async def slowly(v: dict) -> dict:  # keep the stream running across many commits
        await asyncio.sleep(0.0002)
        return v

    p = Pipeline("t", commit_interval=0.02).source(src).map(slowly).sink(sink)
    runner = Runner(p, handle_signals=False)
    task = asyncio.create_task(runner.run())
    checks = violations = 0
    while not task.done():
        committed = src.committed.get(0, 0)
        in_file = out.read_bytes().count(b"\n") if out.exists() else 0
        checks += 1
        if committed > in_file:
            violations += 1
        await asyncio.sleep(0.005)
    result = await task
    assert result.exit_code == EXIT_OK
    assert checks > 10 and violations == 0
    assert src.committed == {0: n}
    assert [orjson.loads(line)["i"] for line in lines_of(out)] == list(range(n))


def test_rotation_by_size_keeps_every_record(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    n = 1000
    r = run(Pipeline("t").source(MemorySource(values=[{"id": i, "pad": "x" * 20} for i in range(n)],
                                              batch_size=25))
            .sink(FileSink(path=str(out), rotate={"max_bytes": 4000})))
    assert r.exit_code == EXIT_OK
    files = sorted(tmp_path.glob("out.jsonl*"))
    assert len(files) > 5
    assert all(f.stat().st_size <= 4000 for f in files)
    rotated = sorted(f for f in files if f != out)  # timestamps sort in rotation order
    ids = [orjson.loads(line)["id"] for line in lines_of(*rotated, out)]
    assert ids == list(range(n))


def test_rotated_csv_files_each_start_with_the_header(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    run(Pipeline("t").source(MemorySource(values=[{"a": i, "b": -i} for i in range(200)], batch_size=10))
        .sink(FileSink(path=str(out), codec="csv", rotate={"max_bytes": 300})))
    files = list(tmp_path.glob("out.csv*"))
    assert len(files) > 3
    rows: list[list[str]] = []
    for f in files:
        lines = f.read_text().splitlines()
        assert lines[0] == "a,b"
        rows += [line.split(",") for line in lines[1:]]
    assert sorted(int(r[0]) for r in rows) == list(range(200))


def test_rotation_by_interval(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    src = GeneratorSource(count=120, rate=200, seed=1, format="object")
    r = run(Pipeline("t").source(src).sink(FileSink(path=str(out), rotate={"interval": 0.1})))
    assert r.exit_code == EXIT_OK
    files = sorted(tmp_path.glob("out.jsonl*"))
    assert len(files) >= 2  # 120 events at 200/s take at least 0.6 s
    rotated = [f for f in files if f != out]
    ids = [orjson.loads(line)["id"] for line in lines_of(*rotated, out)]
    assert ids == list(range(120))


def test_config_errors() -> None:
    with pytest.raises(ValidationError):
        FileSink(path="x", rotate={})
    with pytest.raises(ValidationError):
        FileSink(path="x", flush="sometimes")
    with pytest.raises(ValidationError, match="unknown codec type 'jsonl'"):
        FileSink(path="x", codec="jsonl")
    with pytest.raises(ValidationError, match="unknown framing type 'lines'"):
        FileSink(path="x", framing="lines")
    assert FileSink(path="x", flush={"interval": 1.5}).config.flush.interval == 1.5


def test_non_string_keys_are_written_as_strings_in_any_batch(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    values = [{"a": 1}, {1: "one", None: 2}, {"nested": {2.5: [1]}}, {"b": 2}]
    r = run(Pipeline("t").source(MemorySource(values=values, batch_size=3)).sink(FileSink(path=str(out))))
    assert r.exit_code == EXIT_OK
    assert out.read_bytes() == b'{"a":1}\n{"1":"one","null":2}\n{"nested":{"2.5":[1]}}\n{"b":2}\n'


def test_large_blocks_through_a_thread_small_ones_inline_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamflow.connectors import files_sink

    threaded: list[int] = []
    in_thread = files_sink._append_in_thread

    async def spy(f, data: bytes, flush: bool) -> None:
        threaded.append(len(data))
        await in_thread(f, data, flush)

    monkeypatch.setattr(files_sink, "_append_in_thread", spy)
    monkeypatch.setattr(files_sink, "INLINE_WRITE_MAX", 100)
    values = [{"i": i, "pad": "x" * (i % 7)} for i in range(60)]
    out = tmp_path / "out.jsonl"
    r = run(Pipeline("t").source(MemorySource(values=values + [{"i": 60}], batch_size=20))
            .sink(FileSink(path=str(out), fsync=True)))
    assert r.exit_code == EXIT_OK
    assert threaded and all(n > 100 for n in threaded) and len(threaded) == 3  # the last batch is small
    assert [orjson.loads(line) for line in lines_of(out)] == values + [{"i": 60}]
