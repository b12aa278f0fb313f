"""``--set key.path=value`` overrides applied to the YAML tree before validation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from .document import Document, KeyPath, format_path
from .errors import Issue

#: Top-level keys under which missing mappings are created (their shape is fixed by the schema).
CREATABLE = ("settings",)


def parse_value(text: str) -> Any:
    """A ``--set`` value read as a YAML scalar (``10`` -> int, ``true`` -> bool, ``x`` -> str)."""
    try:
        value = YAML(typ="safe").load(text)
    except YAMLError:
        return text
    return value


def _split(expr: str) -> tuple[KeyPath, str]:
    key, sep, value = expr.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ValueError("expected KEY.PATH=VALUE")
    return tuple(int(p) if p.isdigit() else p for p in parts), value


def apply_overrides(doc: Document, overrides: Iterable[str]) -> list[Issue]:
    """Set each ``key.path=value`` in ``doc``; returns one `Issue` per path that does not exist.

    A path must lead through existing mappings and list items (indexes are
    numbers: ``sinks.0.path``); only its last key may be new, and under
    ``settings`` missing mappings are created.
    """
    issues: list[Issue] = []
    for expr in overrides:
        where = f"{doc.filename}: --set {expr}"
        try:
            path, text = _split(expr)
        except ValueError as exc:
            issues.append(Issue(where, "", str(exc)))
            continue
        if not isinstance(doc.root, dict):
            issues.append(Issue(where, "", "the file has no top-level mapping to override"))
            continue
        problem = _set(doc.root, path, parse_value(text))
        if problem:
            issues.append(Issue(where, format_path(path), problem))
        else:
            doc.overrides[path] = expr
    return issues


def _set(root: Any, path: KeyPath, value: Any) -> str | None:
    node = root
    creatable = path[0] in CREATABLE
    for i, part in enumerate(path):
        last = i == len(path) - 1
        here = format_path(path[:i]) or "the top level"
        if isinstance(node, list):
            if not isinstance(part, int):
                return f"unknown path: {here} is a list; use an index (e.g. {format_path((*path[:i], 0))})"
            if not 0 <= part < len(node):
                return f"unknown path: {here} has {len(node)} items, no index {part}"
        elif isinstance(node, dict):
            part = str(part)
            if not last and part not in node:
                if not creatable:
                    return f"unknown path: {format_path((*path[:i], part))} is not in the file"
                node[part] = CommentedMap()
        else:
            return f"unknown path: {here} is a {type(node).__name__}, not a mapping or list"
        if last:
            node[part] = value
            return None
        node = node[part]
    return None
