"""No silent change to data: integers beyond 64 bits stay exact, blank lines are handled alike and counted,
and a dead-letter record says how its payload is encoded."""

from __future__ import annotations

from pathlib import Path

import orjson

from streamflow import Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.runner import EXIT_OK

BIG = 2**70 + 1
LINES = (b'{"id": 1, "n": 1180591620717411303425}\n'
         b'{"id": 2, "n": -99999999999999999999999999, "m": [18446744073709551616, 1.5]}\n'
         b'{"id": 3, "n": 7}\n')


def test_integers_beyond_64_bits_round_trip_exactly_through_a_file_pipeline(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(LINES)
    result = Pipeline("big").source("file", path=str(src)).sink("file", path=str(out)).run(handle_signals=False)
    assert result.exit_code == EXIT_OK
    rows = [line for line in out.read_bytes().splitlines()]
    assert rows[0] == b'{"id":1,"n":1180591620717411303425}'
    assert b"-99999999999999999999999999" in rows[1] and b"18446744073709551616" in rows[1]


def test_parse_keeps_big_integers_exact_in_python_values() -> None:
    src = MemorySource(values=LINES.splitlines())
    sink = MemorySink()
    Pipeline("big").source(src).transform("parse").sink(sink).run(handle_signals=False)
    assert sink.values[0]["n"] == BIG and isinstance(sink.values[0]["n"], int)
    assert sink.values[1]["m"] == [2**64, 1.5] and sink.values[2] == {"id": 3, "n": 7}


def test_blank_lines_are_skipped_and_counted_alike_by_a_file_source_and_a_parse_stage(tmp_path: Path) -> None:
    data = b'{"id": 1}\n\n   \n{"id": 2}\n\t\n{"id": 3}\n'  # 6 lines: 3 events, 3 blank
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    sink = MemorySink()
    direct = Pipeline("a").source("file", path=str(src), format="jsonl").sink(sink).run(handle_signals=False)
    source_stats = next(s for s in direct.stats if s.kind == "source")
    assert [v["id"] for v in sink.values] == [1, 2, 3]
    assert (source_stats.events_out, source_stats.blank, source_stats.errors) == (3, 3, 0)

    parsed_sink = MemorySink()
    parsed = (Pipeline("b").source("file", path=str(src), codec="raw").transform("parse", codec="json")
              .sink(parsed_sink).run(handle_signals=False))
    parse_stats = next(s for s in parsed.stats if s.name == "parse")
    assert [v["id"] for v in parsed_sink.values] == [1, 2, 3]
    assert (parse_stats.events_in, parse_stats.events_out, parse_stats.blank, parse_stats.errors) == (6, 3, 3, 0)
    assert parse_stats.filtered == 3  # in = out + filtered + dead_lettered + skipped


def test_a_dead_letter_record_names_its_payload_encoding() -> None:
    src = MemorySource(values=[b'{"ok": 1}', b"\xff\xfe not utf-8", b"{broken"])
    sink, dlq = MemorySink(), MemorySink()
    (Pipeline("dl").source(src).transform("parse", on_error="dead_letter").sink(sink).dead_letter(dlq)
     .run(handle_signals=False))
    binary, text = dlq.values
    assert (binary["payload"], binary["payload_encoding"]) == ((b"\xff\xfe not utf-8").hex(), "hex")
    assert (text["payload"], text["payload_encoding"]) == ("{broken", "utf-8")
    assert dict(dlq.messages[0].headers or [])["streamflow.payload.encoding"] == b"hex"
    assert orjson.loads(orjson.dumps(binary))["payload_encoding"] == "hex"
