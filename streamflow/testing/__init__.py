"""`streamflow test`: config unit tests of pipelines, in the style of ``rpk connect test`` and ``vector test``.

    streamflow test pipelines/                 # every test file under the directory
    streamflow test pipelines/demo.test.yaml   # one test file

Exit code 0: every case passed; 1: a case failed (each failure with a diff);
2: a test file or the pipeline it names is broken (``file:line``, like config errors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from ..core.result import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from .compare import check
from .run import run_case
from .spec import TestCase, discover, read

__all__ = ["Report", "run_tests"]


@dataclass
class Report:
    """Counts of one `run_tests` call, and its exit code."""

    passed: int = 0
    failed: int = 0
    broken: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_CONFIG if self.broken else EXIT_FAILED if self.failed else EXIT_OK

    def summary(self) -> str:
        parts = [f"{self.passed} passed", f"{self.failed} failed"] + ([f"{self.broken} broken"] * bool(self.broken))
        return ", ".join(parts)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _run_one(test: TestCase, report: Report, echo: Callable[[str], None]) -> None:
    title = f"{test.location}: {test.case.name} [{Path(test.pipeline).name}]"
    try:
        problems = check(run_case(test), test.case.expect)
    except ConfigError as exc:
        report.broken += 1
        echo(f"BROKEN {title}\n{_indent(str(exc))}")
        return
    if problems:
        report.failed += 1
        echo(f"FAIL   {title}\n" + "\n".join(_indent(p) for p in problems))
    else:
        report.passed += 1
        echo(f"ok     {title}")


def run_tests(targets: Iterable[str | Path], echo: Callable[[str], None] = print) -> Report:
    """Run every case of the test files ``targets`` name; ``echo`` gets one line (or block) per case."""
    report = Report()
    for target in targets:
        path = Path(target)
        if not path.exists():
            report.broken += 1
            echo(f"BROKEN {path}: no such file or directory")
            continue
        files = list(discover(path))
        if not files and path.is_dir():
            echo(f"no test files under {path} (NAME.test.yaml, or a pipeline with a `tests:` key)")
        for file in files:
            try:
                cases = read(file)
            except ConfigError as exc:
                report.broken += 1
                echo(f"BROKEN {file}\n{_indent(str(exc))}")
                continue
            for test in cases:
                _run_one(test, report, echo)
    return report
