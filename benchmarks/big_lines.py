"""big_lines: file -> parse -> file over lines of 20 MiB; peak RSS must not grow with the number of lines.

Each round runs the pipeline in a fresh child process (``python -m
benchmarks.big_lines --child N``) and reads the child's peak RSS from
``getrusage``. Memory is bounded in bytes (contract 1): a source batch ends at
``batch_bytes`` and a channel holds ``max_bytes`` (a batch larger than that
only enters an empty channel), so the peak is a fixed number of lines in
flight, whatever the length of the file.

    python -m benchmarks.big_lines            # 3, 10 and 20 lines of 20 MiB
    python -m benchmarks.big_lines 3 20 --mib 20
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

#: Peak RSS (MiB) the 20 × 20 MiB run must stay under.
BOUND_MIB = 256


def write_input(path: str, lines: int, mib: int) -> None:
    blob = "a" * (mib << 20)
    with open(path, "w") as f:
        for i in range(lines):
            f.write(f'{{"id": {i}, "blob": "{blob}"}}\n')


def child(lines: int, mib: int, workdir: str) -> None:
    from streamflow import Pipeline
    from streamflow.core.runner import run_pipeline

    src, out = os.path.join(workdir, "in.jsonl"), os.path.join(workdir, "out.jsonl")
    pipeline = Pipeline("big-lines").source("file", path=src, codec="raw").transform("parse").sink("file", path=out)
    result = run_pipeline(pipeline, handle_signals=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(out, "rb") as f:
        written = sum(1 for _ in f)
    print(f"{lines} {result.exit_code} {written} {peak:.0f}")


def run(lines: int, mib: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as workdir:
        write_input(os.path.join(workdir, "in.jsonl"), lines, mib)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.big_lines", "--child", str(lines),
                               "--mib", str(mib), "--dir", workdir],
                              capture_output=True, text=True, check=True)
    _, code, written, peak = proc.stdout.split()
    if int(code) != 0 or int(written) != lines:
        raise SystemExit(f"{lines} lines: exit {code}, {written} lines written\n{proc.stderr}")
    return int(written), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lines", nargs="*", type=int, default=[3, 10, 20])
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--child", type=int)
    parser.add_argument("--dir")
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.mib, args.dir)
        return
    for lines in args.lines:
        written, peak = run(lines, args.mib)
        print(f"{lines:3d} lines of {args.mib} MiB: peak RSS {peak:.0f} MiB ({written} lines written)")
    if args.mib == 20 and 20 in args.lines:
        print(f"bound for 20 x 20 MiB: {BOUND_MIB} MiB")


if __name__ == "__main__":
    main()
