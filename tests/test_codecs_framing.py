"""Codecs × framings: the registries, the batch forms, every framing through the file connectors, `format:`."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from streamflow import ConfigError, Pipeline
from streamflow.codecs import get_codec, get_framing
from streamflow.codecs.framing import MAX_FRAME, FramingError, Incomplete, LengthSplitter, LineSplitter
from streamflow.config import loads_yaml
from streamflow.connectors.files_sink import FileSink
from streamflow.connectors.files_source import FileSource
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.connectors.stdio import StdoutSink
from streamflow.core.registry import CODECS, FRAMINGS
from streamflow.core.runner import EXIT_OK, Runner


def run(p: Pipeline):
    return p.run(handle_signals=False)


def length_frames(*payloads: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in payloads)


# -- the registries ------------------------------------------------------------------

def test_both_registries_hold_the_builtins() -> None:
    assert {"json", "text", "lines", "raw", "csv"} <= set(CODECS.names())
    assert {"newline", "length_delimited", "whole"} <= set(FRAMINGS.names())
    with pytest.raises(ValidationError, match="unknown framing type 'lenght_delimited' \\(did you mean 'length_delimited'\\?\\); expected one of"):
        FileSource(path="x", framing="lenght_delimited")


# -- framings on their own ---------------------------------------------------------------

def test_length_splitter_keeps_partial_frames_across_any_chunking() -> None:
    payloads = [b"", b"a", b"\n\r\n", b"x" * 300, bytes(range(256))]
    data = length_frames(*payloads)
    for size in (1, 3, 4, 5, 7, len(data)):
        splitter, got = LengthSplitter(), []
        for i in range(0, len(data), size):
            got += splitter.feed(data[i:i + size])
        assert got == payloads and splitter.pending == 0 and splitter.rest() is None


def test_length_splitter_end_inside_a_frame_and_a_corrupt_prefix() -> None:
    splitter = LengthSplitter()
    assert splitter.feed(length_frames(b"ok") + b"\x00\x00\x00\x09abc") == [b"ok"]
    rest = splitter.rest()
    assert isinstance(rest, Incomplete) and rest == b"\x00\x00\x00\x09abc" and splitter.rest() is None
    with pytest.raises(FramingError, match="not length-delimited"):
        LengthSplitter().feed((MAX_FRAME + 1).to_bytes(4, "big") + b"{")


def test_line_splitter_skip_counts_like_feed() -> None:
    data = b"a\nbb\r\n\nccc\nunterminated"
    for size in (1, 2, 5, len(data)):
        fed, skipped = LineSplitter(), LineSplitter()
        n_fed = n_skipped = 0
        for i in range(0, len(data), size):
            n_fed += len(fed.feed(data[i:i + size]))
            n_skipped += skipped.skip(data[i:i + size])
        assert n_fed == n_skipped == 4 and fed.pending == skipped.pending == len(b"unterminated")


def test_framing_joins_payloads() -> None:
    codec = get_codec("text")
    values = ["a", b"b", 3]
    assert get_framing("newline").encode(codec, values) == b"a\nb\n3\n"
    assert get_framing("length_delimited").encode(codec, values) == length_frames(b"a", b"b", b"3")
    assert get_framing("whole").encode(codec, values) == b"ab3"


# -- codecs: one payload and the batch forms agree ---------------------------------------

@pytest.mark.parametrize("name, frames", [
    ("json", [b'{"a":1}', b"[1,2]", b'"s"', b"null"]),
    ("text", [b"h\xc3\xa9", b"", b" x "]),
    ("raw", [b"\x00\xff", b""]),
    ("csv", [b'1,"a,b"', b"2,"]),
])
def test_decode_many_is_decode_of_each(name: str, frames: list[bytes]) -> None:
    codec = get_codec(name)
    assert codec.decode_many(frames) == [codec.decode(f) for f in frames]


def test_json_batch_encoding_never_fails_on_a_value() -> None:
    codec = get_codec("json")
    values = [{"a": 1}, b'{"pre":"encoded"}', {1: "int key"}, {"s": {3}}, {"o": object}]
    block = codec.encode_delimited(values, b"\n")
    lines = block.splitlines()
    assert lines[:4] == [b'{"a":1}', b'{"pre":"encoded"}', b'{"1":"int key"}', b'{"s":[3]}']
    assert orjson.loads(lines[4]) == {"o": str(object)}
    assert codec.encode_many(values) == lines  # the same payloads, for the other framings
    with pytest.raises(TypeError):  # one payload (a Kafka record) still refuses it
        codec.encode({"s": {3}})


def test_csv_columns_are_fixed_by_the_first_record_written() -> None:
    codec = get_codec("csv")
    block = codec.encode_delimited([{"a": 1, "b": None}, {"b": 2, "a": 3}], b"\n")
    assert block == b"1,\n3,2\n"
    assert codec.encode_many([{"b": 4, "a": 5}]) == [b"5,4"]


# -- every framing through the file connectors ------------------------------------------

def test_length_delimited_round_trip_keeps_newlines_and_carriage_returns(tmp_path: Path) -> None:
    payloads = [b"one\r", b"two\nlines", b"", b"\r\n", bytes(range(256))]
    out = tmp_path / "out.bin"
    r = run(Pipeline("t").source(MemorySource(values=payloads, batch_size=2))
            .sink(FileSink(path=str(out), codec="raw", framing="length_delimited")))
    assert r.exit_code == EXIT_OK and out.read_bytes() == length_frames(*payloads)
    back = MemorySink()
    src = FileSource(path=str(out), codec="raw", framing="length_delimited", chunk_size=5, batch_size=2)
    assert run(Pipeline("t").source(src).sink(back)).exit_code == EXIT_OK
    assert back.values == payloads and [m.offset for m in back.messages] == [1, 2, 3, 4, 5]


def test_length_delimited_json_bad_and_truncated_frames_go_to_on_error(tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    path.write_bytes(length_frames(b'{"id":1}', b"{not json", b'{"id":3}') + b"\x00\x00\x00\x10{\"id\"")
    out, dead = MemorySink(), MemorySink(name="dead")
    src = FileSource(path=str(path), framing="length_delimited", on_error="dead_letter")
    r = run(Pipeline("t").source(src).sink(out).dead_letter(dead))
    assert r.exit_code == EXIT_OK and r.dead_lettered == 2
    assert out.values == [{"id": 1}, {"id": 3}]
    records = dead.values
    assert [d["source"]["offset"] for d in records] == [2, 4]
    assert [d["payload"] for d in records] == ["{not json", '\x00\x00\x00\x10{"id"']
    assert "FramingError" in records[1]["error"]


def test_frame_by_frame_path_keeps_carriage_returns_of_length_delimited_frames(tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    path.write_bytes(length_frames(b"a\r", b"\xff not utf-8", b"b\r\n"))
    out = MemorySink()
    r = run(Pipeline("t").source(FileSource(path=str(path), codec="text", framing="length_delimited",
                                            on_error="skip")).sink(out))
    assert r.exit_code == EXIT_OK and r.errors == 1
    assert out.values == ["a\r", "b\r\n"] and [m.offset for m in out.messages] == [1, 3]


def test_checkpoint_and_follow_count_length_delimited_frames(tmp_path: Path) -> None:
    path, cp = tmp_path / "in.bin", tmp_path / "cp.json"
    path.write_bytes(length_frames(*(orjson.dumps({"id": i}) for i in range(10))))
    first = MemorySink()
    run(Pipeline("t").source(FileSource(path=str(path), framing="length_delimited", checkpoint=str(cp)))
        .sink(first))
    saved = orjson.loads(cp.read_bytes())
    assert saved["offset"] == path.stat().st_size and saved["line"] == 10
    with open(path, "ab") as f:
        f.write(length_frames(*(orjson.dumps({"id": i}) for i in range(10, 13))))
    second = MemorySink()
    run(Pipeline("t").source(FileSource(path=str(path), framing="length_delimited", checkpoint=str(cp)))
        .sink(second))
    assert [v["id"] for v in first.values] == list(range(10))
    assert [v["id"] for v in second.values] == [10, 11, 12]
    assert [m.offset for m in second.messages] == [11, 12, 13]


async def test_follow_from_the_end_of_a_length_delimited_file(tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    path.write_bytes(length_frames(b'{"old":1}', b'{"old":2}') + b"\x00\x00")  # a frame being written
    out = MemorySink()
    src = FileSource(path=str(path), framing="length_delimited", mode="follow", start_at="end",
                     poll_interval=0.02)
    runner = Runner(Pipeline("t").source(src).sink(out), handle_signals=False)
    task = asyncio.create_task(runner.run())
    while not src.ready:
        await asyncio.sleep(0.02)
    with open(path, "ab") as f:  # the rest of the frame that was being written, then one more
        f.write(b"\x00\x09" + b'{"new":3}' + length_frames(b'{"new":4}'))
    for _ in range(500):
        if len(out.values) >= 2:
            break
        await asyncio.sleep(0.02)
    runner.stop()
    assert (await task).exit_code == EXIT_OK
    assert out.values == [{"new": 3}, {"new": 4}] and [m.offset for m in out.messages] == [3, 4]


def test_whole_framing_reads_a_file_as_one_event(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{\n  "a": [1,\n 2]\n}\n')
    out = MemorySink()
    assert run(Pipeline("t").source(FileSource(path=str(path), framing="whole")).sink(out)).exit_code == 0
    assert out.values == [{"a": [1, 2]}] and out.messages[0].offset == 1
    joined = tmp_path / "joined.txt"
    run(Pipeline("t").source(MemorySource(values=["ab", "c"])).sink(
        FileSink(path=str(joined), codec="text", framing="whole")))
    run(Pipeline("t").source(MemorySource(values=["d"])).sink(
        FileSink(path=str(joined), codec="text", framing="whole")))
    assert joined.read_bytes() == b"abcd"  # no delimiter: nothing is added to "repair" the end


def test_csv_over_length_delimited_frames_reads_the_header(tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    rows = [{"id": "1", "name": "a\nb"}, {"id": "2", "name": "c"}]
    run(Pipeline("t").source(MemorySource(values=rows))
        .sink(FileSink(path=str(path), codec="csv", framing="length_delimited")))
    assert path.read_bytes().startswith(length_frames(b"id,name"))
    back = MemorySink()
    run(Pipeline("t").source(FileSource(path=str(path), codec="csv", framing="length_delimited")).sink(back))
    assert back.values == rows and [m.offset for m in back.messages] == [2, 3]


# -- format: a deprecated alias of codec --------------------------------------------------

@pytest.mark.parametrize("fmt, codec", [("jsonl", "json"), ("lines", "text"), ("raw", "raw"), ("csv", "csv")])
def test_format_is_a_deprecated_alias_that_warns(fmt: str, codec: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamflow.config"):
        src = FileSource(path="x", format=fmt)
    assert src.config.codec == codec and src.config.framing == "newline"
    assert f"`format: {fmt}` is deprecated; write `codec: {codec}` instead" in caplog.text
    assert StdoutSink(format=fmt).config.codec == codec


def test_format_with_codec_or_unknown_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="give only `codec`"):
        FileSink(path="x", format="jsonl", codec="json")
    with pytest.raises(ValidationError, match=r"unknown format 'xml'; `format` is deprecated: write `codec:`"):
        FileSource(path="x", format="xml")


def test_yaml_with_format_still_loads_and_yaml_errors_name_the_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streamflow.config"):
        p = loads_yaml("name: t\nsource: {type: stdin, format: lines}\nsink: {type: stdout, format: csv}\n")
    assert p.sources[0].config.codec == "text" and "write `codec: text`" in caplog.text
    with pytest.raises(ConfigError) as err:
        loads_yaml("name: t\nsource: {type: stdin, codec: jsonl}\nsink: {type: stdout, framing: crlf}\n")
    text = str(err.value)
    assert "source.codec" in text and "unknown codec type 'jsonl'" in text
    assert "sink.framing" in text and "unknown framing type 'crlf'" in text


def test_json_array_framing_joins_for_sinks_and_is_refused_by_sources(tmp_path: Path) -> None:
    framing = get_framing("json_array")
    assert framing.encode(get_codec("json"), [{"a": 1}, [2], b'"raw"']) == b'[{"a":1},[2],"raw"]'
    assert orjson.loads(framing.frame([])) == []
    with pytest.raises(ValidationError, match="can only be written by a sink"):
        FileSource(path=str(tmp_path / "x"), framing="json_array")
    with pytest.raises(FramingError):
        framing.deframer()
