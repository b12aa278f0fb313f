"""config_validation: CPU seconds to validate pipeline files of 0.25, 0.5 and 1 MB; must be linear, ≤ 1 s per MB.

The files are real pipelines: many ``set`` stages, each with a comment, a
name and a flow mapping, plus a generator template of many keys. Each size is
loaded with `load_yaml` (parse, locate, validate, build) in this process;
the figure is CPU time (`time.process_time`), so a busy machine disturbs it
less than wall time.

    python -m benchmarks.config_validation
"""

from __future__ import annotations

import os
import tempfile
import time

from streamflow.config.loader import load_yaml

#: CPU seconds a 1 MB pipeline file may take.
BOUND_SECONDS = 1.0


def pipeline_text(target_bytes: int) -> str:
    head = "name: big\nsource:\n  type: generator\n  count: 1\n  template:\n"
    stages, template = [], []
    i = 0
    while len(head) + sum(map(len, stages)) + sum(map(len, template)) < target_bytes:
        template.append(f"    k{i}: {{choice: [a, b, c]}}\n")
        stages.append(f"  - type: set   # stage {i}\n    name: set-{i}\n    fields: {{f{i}: {i}, g{i}: 'v {i}'}}\n")
        i += 1
    return head + "".join(template) + "stages:\n" + "".join(stages) + "sink:\n  type: stdout\n"


def measure(size: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "pipeline.yaml")
        with open(path, "w") as f:
            f.write(pipeline_text(size))
        started = time.process_time()
        load_yaml(path)
        return os.path.getsize(path), time.process_time() - started


def main() -> None:
    for size in (256 << 10, 512 << 10, 1 << 20):
        actual, seconds = measure(size)
        print(f"{actual / (1 << 20):5.2f} MB pipeline file: validated in {seconds:.2f} s CPU "
              f"({seconds / (actual / (1 << 20)):.2f} s per MB)")
    print(f"bound for 1 MB: {BOUND_SECONDS:.1f} s")


if __name__ == "__main__":
    main()
