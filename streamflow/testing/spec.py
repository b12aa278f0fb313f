"""Test files of `streamflow test`: their schema, where they are found, and how they are read.

A test file ``NAME.test.yaml`` sits beside the pipeline ``NAME.yaml`` (or
``NAME.yml``, ``NAME.py``) it tests; ``pipeline:`` names other pipelines. A
pipeline file may also carry its cases under its own ``tests:`` key. Each case
feeds ``input`` events to the whole transform chain (or to one ``stage``),
with the sources and sinks replaced by in-memory ones, and checks ``expect``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ..config.document import Document, KeyPath
from ..config.errors import InvalidConfig
from ..config.validation import validate
from ..core.configs import ConfigModel
from ..core.refs import FunctionRef

TEST_SUFFIXES = (".test.yaml", ".test.yml")
PIPELINE_SUFFIXES = (".yaml", ".yml", ".py")
#: Directories never searched for test files.
SKIPPED_DIRS = {"node_modules", "__pycache__", "venv"}


class DeadLetterExpectation(ConfigModel):
    """One expected dead-letter record: ``error`` is a substring of the recorded error."""

    error: str | None = Field(None, description="a substring of the error (`JSONDecodeError`, a message …)")
    stage: str | None = Field(None, description="the stage that failed on the event")
    payload: Any = Field(None, description="the original payload (as text when it was bytes)")


class Expect(ConfigModel):
    """What a test case expects; every key given is checked."""

    output: list[Any] | None = Field(None, description="the output events, equal and in order")
    output_subset: list[Any] | None = Field(
        None, description="one item per output event, each contained in it (keys of a mapping may be left out)")
    output_check: list[FunctionRef] | None = Field(
        None, description="`module:function` predicates every output event must satisfy")
    output_count: int | None = Field(None, ge=0, description="how many events come out")
    sinks: dict[str, list[Any]] | None = Field(
        None, description="sink name -> the events it receives (sinks keep their `when`)")
    dead_letters: int | list[DeadLetterExpectation] | None = Field(
        None, description="how many events are dead-lettered, or the records expected, in order")
    filtered: int | None = Field(None, ge=0, description="events dropped on purpose (filter, dedupe)")
    error: str | None = Field(None, description="the run fails with an error containing this text")

    @model_validator(mode="before")
    @classmethod
    def _check_is_a_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("output_check"), str):
            return {**data, "output_check": [data["output_check"]]}
        return data


class Case(ConfigModel):
    """One test case: events in, expectations out."""

    name: str = Field(description="what the case shows")
    stage: str | None = Field(None, description="run only this stage (by name); default: every stage")
    input: list[Any] = Field(description="the events fed in (values; text for a `parse` stage)")
    batch_size: int = Field(100, ge=1, description=(
        "input events per batch; windows judge lateness against the watermark before each batch, "
        "so `batch_size: 1` advances it event by event"))
    expect: Expect = Field(description="what must come out")


class TestFileModel(ConfigModel):
    """A test file: the pipeline(s) it tests and its cases."""

    pipeline: str | list[str] | None = Field(
        None, description="pipeline file(s), relative to this file; default NAME.yaml/.yml/.py beside it")
    tests: list[Case] = Field(description="the test cases")


@dataclass(frozen=True)
class TestCase:
    """A case ready to run: where it is written and which pipeline it runs against."""

    case: Case
    pipeline: str
    location: str
    doc: Document
    path: KeyPath


def _pipelines_of(test_file: Path, given: str | list[str] | None) -> list[Path]:
    if given is not None:
        return [test_file.parent / p for p in ([given] if isinstance(given, str) else given)]
    stem = test_file.name
    for suffix in TEST_SUFFIXES:
        stem = stem.removesuffix(suffix)
    found = [test_file.parent / f"{stem}{s}" for s in PIPELINE_SUFFIXES]
    return [p for p in found if p.is_file()][:1]


def read(path: Path) -> list[TestCase]:
    """The cases of a test file, or of a pipeline file's ``tests:`` key; raises `InvalidConfig`."""
    doc = Document.read(path)
    directory = str(path.resolve().parent)
    if directory not in sys.path:  # `module:function` checks may live beside the test file
        sys.path.insert(0, directory)
    embedded = not path.name.endswith(TEST_SUFFIXES)
    data = doc.to_plain()
    if embedded:
        data = {"pipeline": path.name, "tests": data.get("tests") if isinstance(data, dict) else None}
    if not isinstance(data, dict):
        raise InvalidConfig([doc.issue((), "expected a mapping with `tests` (and optionally `pipeline`)")])
    model, issues = validate(doc, TestFileModel, data, ())
    if model is None:
        raise InvalidConfig(issues)
    pipelines = _pipelines_of(path, model.pipeline)
    if not pipelines:
        raise InvalidConfig([doc.issue((), f"no pipeline beside it to test; expected one of "
                                           f"{', '.join(s for s in PIPELINE_SUFFIXES)} or a `pipeline:` key")])
    missing = [doc.issue(("pipeline",), f"no such file: {p}") for p in pipelines if not p.is_file()]
    if missing:
        raise InvalidConfig(missing)
    return [TestCase(case, str(p), doc.location(("tests", i, "name"))[0], doc, ("tests", i))
            for p in pipelines for i, case in enumerate(model.tests)]


def _has_tests(path: Path) -> bool:
    """Whether a YAML pipeline file carries a ``tests:`` key (files that do not parse have none)."""
    try:
        root = Document.read(path).root
    except InvalidConfig:
        return False
    return isinstance(root, dict) and "tests" in root


def discover(target: Path) -> Iterator[Path]:
    """The test files ``target`` names: itself, or every test file under a directory, sorted."""
    if not target.is_dir():
        yield target
        return
    for root, dirs, files in os.walk(target):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(root) / name
            if name.endswith(TEST_SUFFIXES) or (name.endswith((".yaml", ".yml")) and _has_tests(path)):
                yield path
