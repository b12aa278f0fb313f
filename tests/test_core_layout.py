"""`streamflow/core/` has no import circle, and `Pipeline.run`/`.graph` still reach the engine without one."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import streamflow.core
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core import EXIT_OK, Pipeline
from streamflow.core.engine import LocalEngine
from streamflow.core.result import RunResult

CORE = Path(streamflow.core.__file__).parent


def _nodes(tree: ast.AST, typing_only: bool) -> Iterator[ast.AST]:
    """Every node of ``tree``; without the bodies of ``if TYPE_CHECKING:`` unless ``typing_only``."""
    for node in ast.iter_child_nodes(tree):
        if not typing_only and isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from _nodes(node, typing_only)


def core_imports(module: Path, typing_only: bool = True) -> set[str]:
    """The `core` modules ``module`` imports anywhere: top level, in functions and (with
    ``typing_only``) under TYPE_CHECKING."""
    found: set[str] = set()
    for node in _nodes(ast.parse(module.read_text()), typing_only):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(
                "streamflow.core."):
            found.add((node.module or "").split(".")[2])
    return found


def import_graph(typing_only: bool = True) -> dict[str, set[str]]:
    return {path.stem: core_imports(path, typing_only) for path in CORE.glob("*.py") if path.stem != "__init__"}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that returns to its start), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for dep in sorted(graph.get(node, ())):
            found = visit(dep, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_cycle_finder_finds_a_circle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_pipeline_imports_neither_the_runner_nor_the_renderer() -> None:
    graph = import_graph()
    assert not graph["pipeline"] & {"runner", "graph", "engine", "loops", "routing", "delivery"}
    assert "pipeline" in graph["runner"] and "pipeline" in graph["graph"]


def test_no_import_circle_in_core() -> None:
    assert cycle(import_graph(typing_only=False)) is None


def test_no_import_circle_in_core_even_for_type_checking() -> None:
    assert cycle(import_graph(typing_only=True)) is None


def test_pipeline_run_and_graph_go_through_the_local_engine() -> None:
    assert isinstance(Pipeline.engine, LocalEngine)
    out = MemorySink()
    p = Pipeline("t").source(MemorySource(values=[1, 2, 3])).sink(out)
    result = p.run(handle_signals=False)
    assert isinstance(result, RunResult) and result.exit_code == EXIT_OK
    assert out.values == [1, 2, 3]
    assert p.graph().startswith("flowchart LR\n")
