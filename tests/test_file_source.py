"""file source: codecs and framing, error policy, follow mode (growth, rotation, truncation) and checkpoints."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.codecs import get_codec
from streamflow.codecs.framing import LineSplitter
from streamflow.connectors.files_sink import FileSink
from streamflow.connectors.files_source import FileSource
from streamflow.connectors.memory import MemorySink
from streamflow.core.runner import EXIT_FAILED, EXIT_OK, Runner


def run(p: Pipeline):
    return p.run(handle_signals=False)


def read_jsonl(path: Path) -> list:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


async def eventually(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait (bounded) until ``cond()`` holds; fail naming ``what`` otherwise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


# -- framing and codecs ---------------------------------------------------------

def test_line_splitter_keeps_partial_lines_across_chunks() -> None:
    s = LineSplitter()
    assert s.feed(b"ab") == []
    assert s.feed(b"c\nde") == [b"abc"]
    assert s.feed(b"f") == []
    assert s.feed(b"\n\ng\n") == [b"def", b"", b"g"]
    assert s.rest() is None
    assert s.feed(b"tail") == [] and s.rest() == b"tail" and s.rest() is None


def test_read_jsonl_exact_with_positions(tmp_path: Path) -> None:
    src_path = tmp_path / "in.jsonl"
    records = [{"id": i, "name": f"n{i}"} for i in range(2500)]
    src_path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    out = MemorySink()
    file_out = tmp_path / "out.jsonl"
    r = run(Pipeline("t").source(FileSource(path=str(src_path), batch_size=1000))
            .sink(out).sink(FileSink(path=str(file_out), name="file_out")))
    assert r.exit_code == EXIT_OK and r.events_in == 2500
    assert out.values == records
    assert [m.offset for m in out.messages] == list(range(1, 2501))
    assert {m.topic for m in out.messages} == {str(src_path)} and {m.partition for m in out.messages} == {0}
    assert out.messages[0].raw == b'{"id":0,"name":"n0"}'
    assert file_out.read_bytes() == src_path.read_bytes()


def test_small_chunks_split_lines_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    lines = [f"line {i} " + "x" * (i % 13) for i in range(300)]
    path.write_text("\n".join(lines))  # no final newline: the last line still counts
    out = MemorySink()
    src = FileSource(path=str(path), codec="text", chunk_size=7, batch_size=17,
                     checkpoint=str(tmp_path / "cp.json"))
    assert run(Pipeline("t").source(src).sink(out)).exit_code == EXIT_OK
    assert out.values == lines
    saved = orjson.loads((tmp_path / "cp.json").read_bytes())
    assert saved["offset"] == path.stat().st_size and saved["line"] == 300


def test_text_and_raw_codecs_strip_newlines_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"alpha\r\nbeta\n\ngamma\xc3\xa9\n")
    text, raw = MemorySink(name="text"), MemorySink(name="raw")
    run(Pipeline("t").source(FileSource(path=str(path), codec="text")).sink(text))
    run(Pipeline("t").source(FileSource(path=str(path), codec="raw")).sink(raw))
    assert text.values == ["alpha", "beta", "", "gammaé"]
    assert raw.values == [b"alpha", b"beta", b"", b"gamma\xc3\xa9"]
    assert [m.offset for m in raw.messages] == [1, 2, 3, 4]



def test_line_splitter_notes_carriage_returns() -> None:
    s = LineSplitter()
    assert s.feed(b"a\nb") == [b"a"] and not s.saw_cr
    assert s.feed(b"\r") == [] and s.saw_cr  # a \r waiting in the partial line counts too
    assert s.feed(b"\nc\n") == [b"b\r", b"c"] and s.saw_cr


@pytest.mark.parametrize("chunk_size", [7, 1 << 20])
def test_crlf_json_lines_after_plain_ones_keep_raw_without_cr(tmp_path: Path, chunk_size: int) -> None:
    path = tmp_path / "in.jsonl"
    plain = [orjson.dumps({"id": i}) for i in range(30)]
    crlf = [orjson.dumps({"id": i, "w": "x"}) for i in range(30, 60)]
    path.write_bytes(b"".join(x + b"\n" for x in plain) + b"".join(x + b"\r\n" for x in crlf))
    out = MemorySink()
    src = FileSource(path=str(path), batch_size=8, chunk_size=chunk_size)
    assert run(Pipeline("t").source(src).sink(out)).exit_code == EXIT_OK
    assert [m.raw for m in out.messages] == plain + crlf
    assert out.values == [orjson.loads(x) for x in plain + crlf]
    assert [m.offset for m in out.messages] == list(range(1, 61))

def test_blank_jsonl_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \r\n{"a": 2}\r\n')
    out = MemorySink()
    r = run(Pipeline("t").source(FileSource(path=str(path))).sink(out))
    assert r.exit_code == EXIT_OK and r.errors == 0
    assert out.values == [{"a": 1}, {"a": 2}] and [m.offset for m in out.messages] == [1, 4]


def test_csv_with_header_fields_and_without_header(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,name,note\n1,ann,"a, b"\n2,bob,""\n\n3,cy,x\n')
    with_header, renamed, plain = MemorySink(name="a"), MemorySink(name="b"), MemorySink(name="c")
    run(Pipeline("t").source(FileSource(path=str(path), codec="csv")).sink(with_header))
    run(Pipeline("t").source(FileSource(path=str(path), codec="csv", fields=["k", "who", "n"]))
        .sink(renamed))
    run(Pipeline("t").source(FileSource(path=str(path), codec="csv", csv_header=False)).sink(plain))
    assert with_header.values == [{"id": "1", "name": "ann", "note": "a, b"},
                                  {"id": "2", "name": "bob", "note": ""},
                                  {"id": "3", "name": "cy", "note": "x"}]
    assert [m.offset for m in with_header.messages] == [2, 3, 5]
    assert renamed.values[0] == {"k": "1", "who": "ann", "n": "a, b"}
    assert plain.values == [["id", "name", "note"], ["1", "ann", "a, b"], ["2", "bob", ""], ["3", "cy", "x"]]


def test_csv_row_with_wrong_width_goes_to_error_policy(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a,b\n1,2\n3\n4,5\n")
    out = MemorySink()
    r = run(Pipeline("t").source(FileSource(path=str(path), codec="csv", on_error="skip")).sink(out))
    assert r.exit_code == EXIT_OK and r.errors == 1
    assert out.values == [{"a": "1", "b": "2"}, {"a": "4", "b": "5"}]


def test_csv_codec_round_trip_and_parse_stage() -> None:
    codec = get_codec("csv")
    assert codec.decode(b'1,"x,y",z') == ["1", "x,y", "z"]
    assert codec.encode(["1", "x,y", None]) == b'1,"x,y",'
    assert codec.encode({"a": 1, "b": "q\"q"}) == b'1,"q""q"'
    src_values = [b"1,ann", b"2,bob"]
    from streamflow.connectors.memory import MemorySource

    out = MemorySink()
    run(Pipeline("t").source(MemorySource(values=src_values)).parse("csv").sink(out))
    assert out.values == [["1", "ann"], ["2", "bob"]]


# -- bad input ---------------------------------------------------------------------

def test_malformed_json_lines_are_dead_lettered_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [orjson.dumps({"id": i}).decode() for i in range(50)]
    bad_lines = {7: "{not json", 23: '{"id": 23,', 41: "]"}
    for n, text in bad_lines.items():
        lines[n - 1] = text
    path.write_text("\n".join(lines) + "\n")
    out_path, dlq_path = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    cp = tmp_path / "cp.json"
    src = FileSource(path=str(path), batch_size=10, on_error="dead_letter", checkpoint=str(cp))
    r = run(Pipeline("t").source(src).sink(FileSink(path=str(out_path)))
            .dead_letter(FileSink(path=str(dlq_path), name="dlq")))
    assert r.exit_code == EXIT_OK and r.dead_lettered == 3
    good = [orjson.loads(line) for n, line in enumerate(lines, 1) if n not in bad_lines]
    assert read_jsonl(out_path) == good
    dead = read_jsonl(dlq_path)
    assert [d["source"]["offset"] for d in dead] == sorted(bad_lines)
    assert [d["payload"] for d in dead] == [bad_lines[n] for n in sorted(bad_lines)]
    assert all(d["source"]["topic"] == str(path) and d["stage"] == "file" for d in dead)
    assert orjson.loads(cp.read_bytes())["line"] == 50  # dead-lettered lines count as done


def test_fail_policy_stops_and_does_not_checkpoint_past_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"id": {i}}}\n' for i in range(30)) + "oops\n" +
                    "".join(f'{{"id": {i}}}\n' for i in range(30, 60)))
    cp = tmp_path / "cp.json"
    r = run(Pipeline("t").source(FileSource(path=str(path), batch_size=10, checkpoint=str(cp)))
            .sink(MemorySink()))
    assert r.exit_code == EXIT_FAILED and "@31" in str(r.error)
    assert orjson.loads(cp.read_bytes())["line"] <= 30


# -- follow mode ------------------------------------------------------------------

async def test_follow_sees_appended_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"n": 0}\n{"n": 1}\n')
    out = MemorySink()
    runner = Runner(Pipeline("t").source(FileSource(path=str(path), mode="follow", poll_interval=0.02))
                    .sink(out), handle_signals=False)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: len(out.values) == 2, "the initial lines")
    append(path, '{"n": 2}\n{"n": ')  # a partial line waits for its newline
    await eventually(lambda: len(out.values) == 3, "the appended line")
    append(path, "3}\n")
    await eventually(lambda: len(out.values) == 4, "the completed line")
    runner.stop()
    result = await task
    assert result.exit_code == EXIT_OK and result.reason == "stopped"
    assert out.values == [{"n": i} for i in range(4)]
    assert [m.offset for m in out.messages] == [1, 2, 3, 4]


async def test_follow_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("a1\na2\n")
    out = MemorySink()
    runner = Runner(Pipeline("t").source(FileSource(path=str(path), codec="text", mode="follow",
                                                    poll_interval=0.02)).sink(out),
                    handle_signals=False)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: out.values == ["a1", "a2"], "the first file")
    os.rename(path, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", "a3\na4")  # late writes to the old file, last one unterminated
    path.write_text("b1\nb2\n")
    await eventually(lambda: len(out.values) >= 6, "the rotated file")
    append(path, "b3\n")
    await eventually(lambda: len(out.values) >= 7, "growth of the new file")
    runner.stop()
    assert (await task).exit_code == EXIT_OK
    assert out.values == ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]
    assert [m.offset for m in out.messages] == [1, 2, 3, 4, 1, 2, 3]


async def test_follow_survives_truncation(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("first line that is long\nsecond line that is long\n")
    out = MemorySink()
    runner = Runner(Pipeline("t").source(FileSource(path=str(path), codec="text", mode="follow",
                                                    poll_interval=0.02)).sink(out),
                    handle_signals=False)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: len(out.values) == 2, "the original lines")
    with open(path, "w") as f:  # truncate in place (same inode), then write less than before
        f.write("x\ny\n")
    await eventually(lambda: len(out.values) >= 4, "the lines after truncation")
    runner.stop()
    assert (await task).exit_code == EXIT_OK
    assert out.values == ["first line that is long", "second line that is long", "x", "y"]


async def test_follow_start_at_end_and_waiting_for_the_file(tmp_path: Path) -> None:
    old = tmp_path / "old.log"
    old.write_text("skip1\nskip2\npart")
    later = tmp_path / "later.log"
    at_end, waiting = MemorySink(name="end"), MemorySink(name="wait")
    p = (Pipeline("t")
         .source(FileSource(path=str(old), codec="text", mode="follow", start_at="end",
                            poll_interval=0.02, name="old"))
         .source(FileSource(path=str(later), codec="text", mode="follow", poll_interval=0.02,
                            name="later"))
         .sink(at_end, when=lambda v: v.startswith(("part", "new")))
         .sink(waiting, when=lambda v: v.startswith("born")))
    runner = Runner(p, handle_signals=False)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: runner.state == "running", "the runner to start")
    append(old, "ial\nnew\n")
    later.write_text("born\n")
    await eventually(lambda: len(at_end.values) == 2 and len(waiting.values) == 1, "the new lines")
    runner.stop()
    assert (await task).exit_code == EXIT_OK
    assert at_end.values == ["partial", "new"]
    assert [m.offset for m in at_end.messages] == [3, 4]
    assert waiting.values == ["born"]


# -- checkpoints ------------------------------------------------------------------

def test_checkpoint_resume_in_read_mode(tmp_path: Path) -> None:
    path, cp = tmp_path / "in.jsonl", tmp_path / "cp.json"
    path.write_text("".join(f'{{"id": {i}}}\n' for i in range(100)))
    first, second = MemorySink(name="a"), MemorySink(name="b")
    run(Pipeline("t").source(FileSource(path=str(path), checkpoint=str(cp), batch_size=7)).sink(first))
    append(path, "".join(f'{{"id": {i}}}\n' for i in range(100, 130)))
    run(Pipeline("t").source(FileSource(path=str(path), checkpoint=str(cp), batch_size=7)).sink(second))
    assert [v["id"] for v in first.values] == list(range(100))
    assert [v["id"] for v in second.values] == list(range(100, 130))
    assert [m.offset for m in second.messages] == list(range(101, 131))
    saved = orjson.loads(cp.read_bytes())
    assert saved == {"path": str(path), "inode": path.stat().st_ino, "offset": path.stat().st_size,
                     "line": 130}
    assert not (tmp_path / "cp.json.tmp").exists()


def test_checkpoint_resume_keeps_the_csv_header(tmp_path: Path) -> None:
    path, cp = tmp_path / "in.csv", tmp_path / "cp.json"
    path.write_text("id,v\n1,a\n2,b\n")
    first, second = MemorySink(name="a"), MemorySink(name="b")
    run(Pipeline("t").source(FileSource(path=str(path), codec="csv", checkpoint=str(cp))).sink(first))
    append(path, "3,c\n")
    run(Pipeline("t").source(FileSource(path=str(path), codec="csv", checkpoint=str(cp))).sink(second))
    assert first.values == [{"id": "1", "v": "a"}, {"id": "2", "v": "b"}]
    assert second.values == [{"id": "3", "v": "c"}]


def test_checkpoint_of_a_longer_file_restarts_from_zero(tmp_path: Path) -> None:
    path, cp = tmp_path / "in.jsonl", tmp_path / "cp.json"
    path.write_text('{"id": 1}\n{"id": 2}\n')
    cp.write_bytes(orjson.dumps({"path": str(path), "inode": path.stat().st_ino, "offset": 9999,
                                 "line": 500}))
    out = MemorySink()
    run(Pipeline("t").source(FileSource(path=str(path), checkpoint=str(cp))).sink(out))
    assert out.values == [{"id": 1}, {"id": 2}]


async def test_follow_stop_and_resume_reads_no_line_twice(tmp_path: Path) -> None:
    path, cp = tmp_path / "log.jsonl", tmp_path / "cp.json"
    path.write_text("".join(f'{{"id": {i}}}\n' for i in range(500)))

    def pipeline(sink: MemorySink) -> Pipeline:
        return (Pipeline("t", commit_interval=0.05)
                .source(FileSource(path=str(path), mode="follow", checkpoint=str(cp), batch_size=50,
                                   poll_interval=0.02))
                .sink(sink))

    first = MemorySink(name="a")
    runner = Runner(pipeline(first), handle_signals=False)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: len(first.values) >= 100, "some lines")
    runner.stop()
    assert (await task).exit_code == EXIT_OK
    append(path, "".join(f'{{"id": {i}}}\n' for i in range(500, 600)))

    second = MemorySink(name="b")
    runner = Runner(pipeline(second), handle_signals=False)
    task = asyncio.create_task(runner.run())
    await eventually(lambda: len(first.values) + len(second.values) >= 600, "the rest")
    runner.stop()
    assert (await task).exit_code == EXIT_OK
    ids = [v["id"] for v in first.values + second.values]
    assert ids == list(range(600))  # every line exactly once, in order


# -- config -----------------------------------------------------------------------

def test_config_errors_before_io(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="start_at"):
        FileSource(path=str(tmp_path / "x"), start_at="end")
    with pytest.raises(ValidationError, match="colour — unknown key"):
        FileSource(path="x", colour="red")
    with pytest.raises(ValidationError, match="unknown codec type 'xml'"):
        FileSource(path="x", codec="xml")
    with pytest.raises(ValidationError, match="cannot be followed"):
        FileSource(path="x", framing="whole", mode="follow")


def test_read_mode_on_a_missing_file_fails(tmp_path: Path) -> None:
    r = run(Pipeline("t").source(FileSource(path=str(tmp_path / "nope.jsonl"))).sink(MemorySink()))
    assert r.exit_code == EXIT_FAILED and isinstance(r.error, FileNotFoundError)
