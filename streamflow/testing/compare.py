"""Checking a case's `Outcome` against its `Expect`: one readable message per unmet expectation."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import orjson

from ..core.refs import name_of
from ..core.result import EXIT_OK
from .run import Outcome
from .spec import DeadLetterExpectation, Expect


def _lines(values: Any) -> list[str]:
    """``values`` as indented JSON lines (sorted keys), the form diffs are shown in."""
    text = orjson.dumps(values, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                        default=repr)
    return text.decode().splitlines()


def diff(expected: Any, actual: Any) -> str:
    """A unified diff of two values: ``-`` lines are expected, ``+`` lines came out."""
    lines = difflib.unified_diff(_lines(expected), _lines(actual), "expected", "actual", lineterm="", n=3)
    return "\n".join(lines)


def contains(actual: Any, expected: Any) -> bool:
    """Whether ``expected`` is contained in ``actual``: mappings may leave keys out, recursively."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and \
            all(contains(a, e) for a, e in zip(actual, expected, strict=True))
    return bool(actual == expected)


def _trimmed(actual: list[Any], expected: list[Any]) -> list[Any]:
    """``actual`` reduced to the keys ``expected`` names, so a subset diff shows only what matters."""
    def trim(a: Any, e: Any) -> Any:
        if isinstance(a, dict) and isinstance(e, dict):
            return {k: trim(a[k], e[k]) if k in e else a[k] for k in a if k in e}
        return a
    return [trim(a, e) for a, e in zip(actual, expected, strict=False)] + actual[len(expected):]


def _dead_letter_matches(record: Any, want: DeadLetterExpectation) -> bool:
    if not isinstance(record, dict):
        return False
    if want.error is not None and want.error not in str(record.get("error", "")):
        return False
    if want.stage is not None and record.get("stage") != want.stage:
        return False
    return want.payload is None or record.get("payload") == want.payload


def _check_dead_letters(outcome: Outcome, want: int | list[DeadLetterExpectation]) -> list[str]:
    got = outcome.dead_letters
    if isinstance(want, int):
        return [] if len(got) == want else [f"dead letters: expected {want}, got {len(got)}\n{diff([], got)}"]
    if len(got) == len(want) and all(_dead_letter_matches(r, w) for r, w in zip(got, want, strict=True)):
        return []
    expected = [w.model_dump(exclude_none=True) for w in want]
    return [f"dead letters differ (error: a substring of the recorded error)\n{diff(expected, got)}"]


def _check_predicates(outcome: Outcome, checks: list[Callable[..., Any]]) -> list[str]:
    out = []
    for fn in checks:
        failing = [v for v in outcome.output if not fn(v)]
        if failing:
            out.append(f"output_check {name_of(fn)}: false for {len(failing)} of {len(outcome.output)} events, "
                       f"the first:\n{orjson.dumps(failing[0], default=repr).decode()}")
    return out


def check(outcome: Outcome, expect: Expect) -> list[str]:
    """Every way ``outcome`` misses ``expect`` (empty: the case passes)."""
    result = outcome.result
    if expect.error is not None:
        text = f"{result.reason} {result.error or ''}"
        if result.exit_code == EXIT_OK or expect.error not in text:
            return [f"expected the run to fail with {expect.error!r}; it ended: {result.summary()}"]
    elif result.exit_code != EXIT_OK:
        return [f"the pipeline failed: {result.error or result.reason}"]
    problems: list[str] = []
    if expect.output is not None and outcome.output != expect.output:
        problems.append(f"output differs\n{diff(expect.output, outcome.output)}")
    if expect.output_subset is not None and not contains(outcome.output, expect.output_subset):
        problems.append("output does not contain the expected items (one per event, in order)\n"
                        + diff(expect.output_subset, _trimmed(outcome.output, expect.output_subset)))
    if expect.output_count is not None and len(outcome.output) != expect.output_count:
        problems.append(f"output_count: expected {expect.output_count}, got {len(outcome.output)}")
    problems += _check_predicates(outcome, expect.output_check or [])
    for name, values in (expect.sinks or {}).items():
        if name not in outcome.sinks:
            problems.append(f"sinks: no sink named {name!r}; sinks: {', '.join(outcome.sinks) or 'none'}")
        elif outcome.sinks[name] != values:
            problems.append(f"sink {name!r} received other events\n{diff(values, outcome.sinks[name])}")
    if expect.dead_letters is not None:
        problems += _check_dead_letters(outcome, expect.dead_letters)
    if expect.filtered is not None and outcome.filtered != expect.filtered:
        problems.append(f"filtered: expected {expect.filtered}, got {outcome.filtered}")
    return problems
