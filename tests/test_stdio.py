"""stdin source and stdout sink, through a real subprocess and its pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

PIPE_SCRIPT = """
import sys
from streamflow import Pipeline
codec_in, codec_out, on_error, framing_in = sys.argv[1:5]
p = Pipeline("stdio").source("stdin", codec=codec_in, framing=framing_in, batch_size=100, on_error=on_error)
if codec_in == "raw":
    p = p.parse("json")
r = p.sink("stdout", codec=codec_out).run(handle_signals=False)
print(r.summary(), file=sys.stderr)
sys.exit(r.exit_code)
"""


def pipe(data: bytes | Path, codec_in: str = "json", codec_out: str = "json",
         on_error: str = "fail", framing_in: str = "newline") -> subprocess.CompletedProcess[bytes]:
    args = [sys.executable, "-c", PIPE_SCRIPT, codec_in, codec_out, on_error, framing_in]
    if isinstance(data, Path):
        with open(data, "rb") as f:  # stdin is a regular file, not a pipe
            return subprocess.run(args, stdin=f, capture_output=True, timeout=60)
    return subprocess.run(args, input=data, capture_output=True, timeout=60)


def test_jsonl_stdin_to_stdout_exact() -> None:
    records = [{"id": i, "text": f"hé {i}"} for i in range(5000)]
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    proc = pipe(data)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == data
    assert b"5000 in, 5000 out" in proc.stderr


def test_lines_with_unterminated_last_line() -> None:
    proc = pipe(b"one\ntwo\n\nthree", codec_in="text", codec_out="text")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"one\ntwo\n\nthree\n"


def test_csv_stdin_to_jsonl() -> None:
    proc = pipe(b'id,name\n1,"a,b"\n2,c\n', codec_in="csv")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b'{"id":"1","name":"a,b"}\n{"id":"2","name":"c"}\n'


def test_raw_stdin_parsed_downstream_from_a_regular_file(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(300)))
    proc = pipe(src, codec_in="raw")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"".join(b'{"n":%d}\n' % i for i in range(300))


def test_malformed_stdin_lines_skip_or_fail() -> None:
    data = b'{"a": 1}\nnope\n{"a": 2}\n'
    skipped = pipe(data, on_error="skip")
    assert skipped.returncode == 0 and skipped.stdout == b'{"a":1}\n{"a":2}\n'
    assert b"stdin[0]@2" in skipped.stderr  # logged with its line number
    failed = pipe(data)
    assert failed.returncode == 1 and b"stdin[0]@2" in failed.stderr


def test_length_delimited_stdin_to_json_lines() -> None:
    frames = [b'{"n": %d}' % i for i in range(300)] + [b'{"n": "a\\nb"}']
    data = b"".join(len(f).to_bytes(4, "big") + f for f in frames)
    proc = pipe(data, codec_in="raw", framing_in="length_delimited")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"".join(b'{"n":%d}\n' % i for i in range(300)) + b'{"n":"a\\nb"}\n'
