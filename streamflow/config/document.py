"""`Document`: a parsed YAML pipeline file that can tell the line and column of every value.

A file is read into plain values first (`event_yaml`, from libyaml's
events); where each value is, is read only when a position is asked for (an
error message). When that first reading meets a problem, `fast_yaml` reads
the file into its located tree and reports the problem at its line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from . import event_yaml, fast_yaml
from .errors import InvalidConfig, Issue
from .event_yaml import Positions

#: A path into the config tree: mapping keys and list indexes.
KeyPath = tuple[str | int, ...]

#: Largest pipeline file read (bytes): a config, not a data set.
MAX_FILE_BYTES = 8 << 20
#: Values a document may hold in all once its aliases (``*name``) are expanded; a YAML "billion
#: laughs" reaches it within a fraction of a second instead of expanding without end.
MAX_VALUES = 1_000_000
#: How deep mappings and lists may nest (deeper would exhaust Python's recursion, not a config's needs).
MAX_DEPTH = 100


def format_path(path: KeyPath) -> str:
    """``("sinks", 0, "path")`` -> ``sinks[0].path``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _plain_scalar(value: Any) -> Any:
    # ruamel's round-trip scalars (ScalarFloat, HexInt, …) become plain Python values
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def _has(node: Any, part: str | int) -> bool:
    """Whether ``node`` is a mapping with the key ``part`` or a list with the index ``part``."""
    if isinstance(node, dict):
        return not isinstance(part, int) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _positions_of(tree: Any) -> Positions:
    """The positions ruamel's round-trip containers (and `fast_yaml`'s) record, as one table."""
    positions: Positions = {}
    todo = [tree]
    while todo:
        node = todo.pop()
        if not isinstance(node, (CommentedMap, CommentedSeq)) or id(node) in positions:
            continue
        lc = node.lc
        items = {key: tuple(where) for key, where in (lc.data or {}).items()}
        positions[id(node)] = (lc.line or 0, lc.col or 0, items)
        todo += node.values() if isinstance(node, dict) else node
    return positions


class Document:
    """The YAML tree of one pipeline file plus where each value came from.

    Positions are looked up by key path, so a value keeps its line after
    interpolation or validation. Values set by ``--set`` overrides are
    located by the override that set them.
    """

    def __init__(self, filename: str, root: Any, text: str | None = None) -> None:
        """``root``: plain values read from ``text`` (positions are read from it when asked for), or
        without ``text`` a tree that knows its positions (ruamel's round-trip tree, `fast_yaml`'s)."""
        self.filename = filename
        #: the values; ``--set`` overrides change them
        self.root = root
        self._text = text
        self._located = None if text is not None else (root, _positions_of(root))
        #: key path -> ``--set`` expression, for values that came from the command line
        self.overrides: dict[KeyPath, str] = {}

    @classmethod
    def parse(cls, text: str, filename: str) -> Document:
        """Parse YAML text; a syntax error raises `InvalidConfig` with its line."""
        if fast_yaml.AVAILABLE:
            try:
                return cls(filename, event_yaml.load(text), text)
            except Exception:  # noqa: BLE001 - whatever it is, the located reading below reports it
                pass
        try:
            root = fast_yaml.load(text) if fast_yaml.AVAILABLE else YAML(typ="rt").load(text)
        except (YAMLError, fast_yaml.LIBYAML_ERROR, fast_yaml.FastYamlError) as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            context = getattr(exc, "context", None)
            message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
            line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            raise InvalidConfig([Issue(f"{filename}:{line}:{col}", "", message, line, col)]) from None
        return cls(filename, root)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Document:
        """Read and parse a YAML file (at most `MAX_FILE_BYTES`)."""
        try:
            size = os.stat(path).st_size
            if size > MAX_FILE_BYTES:
                raise InvalidConfig([Issue(str(path), "", f"the pipeline file is {size:,} bytes; at most "
                                                          f"{MAX_FILE_BYTES:,} are read")])
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidConfig([Issue(str(path), "", f"cannot read the pipeline file: {exc}")]) from None
        return cls.parse(text, str(path))

    # -- positions ----------------------------------------------------------
    @property
    def located(self) -> tuple[Any, Positions]:
        """The values as read (before ``--set``) and where each is; read from the text on first use."""
        if self._located is None:
            assert self._text is not None
            self._located = event_yaml.load_located(self._text)
        return self._located

    def _walk(self, path: KeyPath, at: str) -> tuple[int, tuple[int, int]]:
        """How many leading parts of ``path`` exist, and the 0-based position of the deepest.

        The parts are looked up in `root` (which ``--set`` may have changed) and their positions
        in `located`, as far as it holds them (a key a merge brought in has none of its own).
        """
        node, (here, positions) = self.root, self.located
        line, col, _ = positions.get(id(here), (0, 0, {}))
        pos = (line, col)
        depth = 0
        for i, part in enumerate(path):
            if not _has(node, part):
                break
            if here is not None and _has(here, part):
                entry = positions.get(id(here))
                item = entry[2].get(part) if entry is not None else None
                if item is not None:
                    last_key = at == "key" and i == len(path) - 1
                    pos = (item[0], item[1]) if last_key or len(item) == 2 else (item[2], item[3])
                here = here[part]
            else:
                here = None  # a value --set put there: no position of its own
            node = node[part]
            depth += 1
        return depth, pos

    def existing(self, path: KeyPath) -> KeyPath:
        """The longest prefix of ``path`` that exists in the tree."""
        return path[: self._walk(path, "value")[0]]

    def location(self, path: KeyPath, at: str = "value") -> tuple[str, int, int]:
        """``file:LINE:COL`` of the value (``at="key"``: the key) at ``path``, line and column."""
        for prefix, expr in self.overrides.items():
            if path[: len(prefix)] == prefix:
                return f"{self.filename}: --set {expr}", 0, 0
        _, (line, col) = self._walk(path, at)
        return f"{self.filename}:{line + 1}:{col + 1}", line + 1, col + 1

    def issue(self, path: KeyPath, message: str, at: str = "value", shown: KeyPath | None = None) -> Issue:
        """An `Issue` located at ``path``; ``shown`` is the field path printed (default ``path``)."""
        location, line, col = self.location(path, at)
        return Issue(location, format_path(path if shown is None else shown), message, line, col)

    # -- data -----------------------------------------------------------------
    def to_plain(self, on_string: Callable[[str, KeyPath], Any] | None = None) -> Any:
        """The tree as plain dicts, lists and scalars; ``on_string`` may rewrite each string value.

        Aliases are expanded (each use is a copy). More than `MAX_VALUES` values in all, an alias
        inside the value it names, or containers nested deeper than `MAX_DEPTH` are an
        `InvalidConfig` naming where it happened.
        """
        return _Expansion(self, on_string).convert(self.root, ())


class _Expansion:
    """One `Document.to_plain`: the values copied so far, and the containers being copied."""

    def __init__(self, doc: Document, on_string: Callable[[str, KeyPath], Any] | None) -> None:
        self.doc = doc
        self.on_string = on_string
        self.count = 0
        self.inside: set[int] = set()  # ids of the containers on the path being copied

    def convert(self, node: Any, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            self.fail(path, f"the document expands to more than {MAX_VALUES:,} values: YAML aliases (*name) "
                            "repeat too much (an alias bomb?)")
        kind = type(node)
        if kind is str:  # most values: no conversion to try
            return node if self.on_string is None else self.on_string(node, path)
        if kind is int or kind is float or kind is bool or node is None:
            return node
        if isinstance(node, (dict, list)):
            return self.container(node, path)
        value = _plain_scalar(node)
        if isinstance(value, str) and self.on_string is not None:
            return self.on_string(value, path)
        return value

    def container(self, node: dict[Any, Any] | list[Any], path: KeyPath) -> Any:
        if id(node) in self.inside:
            self.fail(path, "a YAML alias (*name) inside the value it names: that value would contain itself")
        if len(path) >= MAX_DEPTH:
            self.fail(path, f"values are nested more than {MAX_DEPTH} deep")
        self.inside.add(id(node))
        if isinstance(node, dict):
            out: Any = {_plain_scalar(k): self.convert(v, (*path, k)) for k, v in node.items()}
        else:
            out = [self.convert(v, (*path, i)) for i, v in enumerate(node)]
        self.inside.discard(id(node))
        return out

    def fail(self, path: KeyPath, message: str) -> None:
        raise InvalidConfig([self.doc.issue(path, message)])
