"""config_validation: CPU seconds to validate pipeline files of 0.25, 0.5 and 1 MB; must be linear, ≤ 1 s per MB.

The files are real pipelines: many ``set`` stages, each with a comment, a
name and a flow mapping, plus a generator template of many keys. Each size is
loaded with `load_yaml` (parse, validate, build) in this process; the figure
is CPU time (`time.process_time`), so a busy machine disturbs it less than
wall time. A small file is loaded first and reported apart: what the first
load of a process pays once (importing the component modules) does not grow
with the file. Last, a 1 MB file with one error in its last line: an invalid
file is read a second time for the positions of its errors.

    python -m benchmarks.config_validation
"""

from __future__ import annotations

import os
import tempfile
import time

from streamflow.config.errors import InvalidConfig
from streamflow.config.loader import load_yaml

#: CPU seconds a 1 MB pipeline file may take.
BOUND_SECONDS = 1.0
#: The last lines of a pipeline file, and the same with an unknown key (an error in its last lines).
_SINK, _BAD_SINK = "sink:\n  type: stdout\n", "sink:\n  type: stdout\n  colour: red\n"


def pipeline_text(target_bytes: int) -> str:
    head = "name: big\nsource:\n  type: generator\n  count: 1\n  template:\n"
    stages, template = [], []
    i = 0
    while len(head) + sum(map(len, stages)) + sum(map(len, template)) < target_bytes:
        template.append(f"    k{i}: {{choice: [a, b, c]}}\n")
        stages.append(f"  - type: set   # stage {i}\n    name: set-{i}\n    fields: {{f{i}: {i}, g{i}: 'v {i}'}}\n")
        i += 1
    return head + "".join(template) + "stages:\n" + "".join(stages) + _SINK


def measure(size: int, invalid: bool = False) -> tuple[int, float]:
    """The file's size and the CPU seconds its `load_yaml` took (``invalid``: to its `InvalidConfig`)."""
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "pipeline.yaml")
        text = pipeline_text(size)
        with open(path, "w") as f:
            f.write(text.replace(_SINK, _BAD_SINK) if invalid else text)
        started = time.process_time()
        try:
            load_yaml(path)
        except InvalidConfig as exc:
            if not invalid or len(exc.issues) != 1 or "colour" not in exc.issues[0].path:
                raise
        return os.path.getsize(path), time.process_time() - started


def main() -> None:
    actual, seconds = measure(16 << 10)
    print(f"first load in this process ({actual >> 10} KB): {seconds:.2f} s CPU, paid once")
    for size in (256 << 10, 512 << 10, 1 << 20):
        actual, seconds = measure(size)
        print(f"{actual / (1 << 20):5.2f} MB pipeline file: validated in {seconds:.2f} s CPU "
              f"({seconds / (actual / (1 << 20)):.2f} s per MB)")
    actual, seconds = measure(1 << 20, invalid=True)
    print(f"{actual / (1 << 20):5.2f} MB pipeline file with one error: reported in {seconds:.2f} s CPU")
    print(f"bound for 1 MB: {BOUND_SECONDS:.1f} s")


if __name__ == "__main__":
    main()
