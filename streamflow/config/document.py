"""`Document`: a parsed YAML pipeline file that can tell the line and column of every value.

A file is read into plain values first (`plain_yaml`, from libyaml's events);
the tree that knows positions (`fast_yaml`) is built only when a position is
asked for — an error message — or when the plain reader met a problem, which
the located reading then reports at its line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from . import fast_yaml, plain_yaml
from .errors import InvalidConfig, Issue

#: A path into the config tree: mapping keys and list indexes.
KeyPath = tuple[str | int, ...]

#: Largest pipeline file read (bytes): a config, not a data set.
MAX_FILE_BYTES = 8 << 20
#: Values a document may hold in all once its aliases (``*name``) are expanded; a YAML "billion
#: laughs" reaches it within a fraction of a second instead of expanding without end.
MAX_VALUES = 1_000_000


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


class Document:
    """The YAML tree of one pipeline file plus where each value came from.

    Positions are looked up by key path, so a value keeps its line after
    interpolation or validation. Values set by ``--set`` overrides are
    located by the override that set them.
    """

    def __init__(self, filename: str, root: Any, text: str | None = None) -> None:
        self.filename = filename
        #: the values (plain, or ruamel's round-trip tree); ``--set`` overrides change it
        self.root = root
        #: the YAML text ``root`` was read from, when it is not itself a located tree
        self._text = text
        self._located: Any = None if text is not None else root
        #: key path -> ``--set`` expression, for values that came from the command line
        self.overrides: dict[KeyPath, str] = {}

    @classmethod
    def parse(cls, text: str, filename: str) -> Document:
        """Parse YAML text; a syntax error raises `InvalidConfig` with its line."""
        if fast_yaml.AVAILABLE:
            try:
                return cls(filename, plain_yaml.load(text), text)
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
    def located(self) -> Any:
        """The tree with positions (`fast_yaml`), read from the text on first use."""
        if self._located is None and self._text is not None:
            self._located = fast_yaml.load(self._text)
        return self._located

    def _walk(self, path: KeyPath, at: str) -> tuple[int, tuple[int, int]]:
        """How many leading parts of ``path`` exist, and the 0-based position of the deepest.

        The parts are looked up in `root` (which ``--set`` may have changed) and their positions
        in `located`, as long as it holds them.
        """
        node, here = self.root, self.located
        lc = getattr(here, "lc", None)
        pos = (lc.line, lc.col) if lc is not None and lc.line is not None else (0, 0)
        depth = 0
        for i, part in enumerate(path):
            if not (isinstance(node, dict) and not isinstance(part, int) and part in node
                    or isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
                break
            if isinstance(here, CommentedMap) and part in here:
                where = here.lc.key if at == "key" and i == len(path) - 1 else here.lc.value
            elif isinstance(here, CommentedSeq) and isinstance(part, int) and 0 <= part < len(here):
                where = here.lc.item
            else:
                where = None  # a value --set put there: no position of its own
            try:
                if where is not None:
                    line, col = where(part)
                    pos = (line, col)
            except (KeyError, TypeError, IndexError):  # e.g. keys added by merge keys
                pass
            node, here = node[part], (here[part] if where is not None else None)
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

        Aliases are expanded (each use is a copy); more than `MAX_VALUES` values in all is an
        `InvalidConfig` naming where the expansion went past it.
        """
        count = 0

        def convert(node: Any, path: KeyPath) -> Any:
            nonlocal count
            count += 1
            if count > MAX_VALUES:
                raise InvalidConfig([self.issue(path, f"the document expands to more than {MAX_VALUES:,} "
                                                      "values: YAML aliases (*name) repeat too much "
                                                      "(an alias bomb?)")])
            if isinstance(node, dict):
                return {_plain_scalar(k): convert(v, (*path, k)) for k, v in node.items()}
            if isinstance(node, list):
                return [convert(v, (*path, i)) for i, v in enumerate(node)]
            value = _plain_scalar(node)
            if isinstance(value, str) and on_string is not None:
                return on_string(value, path)
            return value

        return convert(self.root, ())
