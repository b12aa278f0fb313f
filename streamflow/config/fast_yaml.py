"""Pipeline files parsed by libyaml (PyYAML's C parser) into the tree ruamel's round-trip loader makes.

ruamel.yaml's round-trip loader — the one that remembers where each value
is — is pure Python: about 5 s of CPU per MB of pipeline file, most of it
scanning. libyaml scans and composes in C and gives every node its line and
column, so this module builds the same `CommentedMap`/`CommentedSeq` tree
(positions included) from libyaml's nodes, resolving plain scalars by
ruamel's YAML 1.2 rules (``yes`` and ``on`` stay strings, ``0o17`` is
octal), so a file means the same whichever parser read it. Anchors become
shared objects, as with ruamel (`Document.to_plain` bounds their expansion);
merge keys (``<<``) add the keys a mapping does not have; a duplicate key is
an error, as with ruamel.

`Document` reads a file with `event_yaml` first (plain values, positions on
demand: several times faster); this tree is what that reading is checked
against, and what reports a problem at its line when that reading meets one.
`Scalars` is shared by both.
"""

from __future__ import annotations

import re
from typing import Any

import yaml  # type: ignore[import-untyped]
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

#: Whether libyaml is there (PyYAML built with it); if not, `Document.parse` uses ruamel alone.
AVAILABLE: bool = bool(getattr(yaml, "__with_libyaml__", False))

#: A decimal integer (ASCII digits, no leading zero, no underscore): int() reads it as ruamel does.
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_PLAIN = "!streamflow/plain"  # the tag of a plain scalar, resolved here by YAML 1.2 rules
_STR = "tag:yaml.org,2002:str"
#: The tag of a merge key (``<<``).
MERGE = "tag:yaml.org,2002:merge"


class FastYamlError(Exception):
    """A problem libyaml did not report (a duplicate key): ``problem`` at ``problem_mark``."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark
        self.context: str | None = None


if AVAILABLE:
    class _Loader(yaml.CSafeLoader):  # type: ignore[misc]
        """libyaml's loader, leaving plain scalars unresolved (PyYAML would apply YAML 1.1)."""

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is yaml.ScalarNode and implicit[0]:
                return _PLAIN if value != "<<" else MERGE
            return super().resolve(kind, value, implicit)


class Scalars:
    """Scalars by ruamel's YAML 1.2 rules: plain ones resolved by its implicit resolvers, tagged ones
    built by its safe constructor."""

    def __init__(self) -> None:
        ruamel = YAML(typ="safe", pure=True)
        resolver: VersionedResolver = ruamel.resolver
        #: ruamel's YAML 1.2 implicit resolvers by first character (looked up once, not per scalar)
        self.implicit: dict[Any, list[tuple[Any, Any]]] = resolver.versioned_resolver
        self.constructor: SafeConstructor = ruamel.constructor
        #: plain scalar text -> its value (scalars are immutable; a file repeats many)
        self.known: dict[str, Any] = {}

    def plain(self, value: str) -> Any:
        """The value of a plain (unquoted, untagged) scalar."""
        try:
            return self.known[value]
        except KeyError:
            pass
        result: Any
        if _DECIMAL.match(value):  # most numbers in a config: what ruamel makes of them, without its constructor
            result = int(value)
        else:
            tag = self.resolve(value)
            result = value if tag is None else self.construct(tag, value)
        self.known[value] = result
        return result

    def resolve(self, value: str) -> str | None:
        """The YAML 1.2 tag of a plain scalar, as ruamel's resolver gives it; None for a string."""
        for tag, regexp in self.implicit.get(value[:1], ()):
            if regexp.match(value):
                return str(tag)
        return None

    def construct(self, tag: str, value: str) -> Any:
        """The value of a scalar of ``tag``; raises ruamel's ``ConstructorError`` for a tag it does not know."""
        return self.constructor.construct_object(ScalarNode(tag, value), deep=True)


class _Builder:
    """Turns libyaml's node graph into ruamel's round-trip containers and plain scalars."""

    def __init__(self) -> None:
        self.built: dict[int, Any] = {}
        self.scalars = Scalars()

    def build(self, node: Any) -> Any:
        known = self.built.get(id(node))
        if known is not None:
            return known  # an alias: the same object, as ruamel makes it
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return self.sequence(node)
        return self.mapping(node)

    def scalar(self, node: Any) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _PLAIN:
            return self.scalars.plain(node.value)
        return self.scalars.construct(tag, node.value)

    def sequence(self, node: Any) -> CommentedSeq:
        seq = self.built[id(node)] = CommentedSeq()
        lc = seq.lc
        lc.line, lc.col = node.start_mark.line, node.start_mark.column
        build = self.build
        positions = lc.data = {}
        for i, item in enumerate(node.value):
            seq.append(build(item))
            mark = item.start_mark
            positions[i] = [mark.line, mark.column]
        return seq

    def mapping(self, node: Any) -> CommentedMap:
        mapping = self.built[id(node)] = CommentedMap()
        lc = mapping.lc
        lc.line, lc.col = node.start_mark.line, node.start_mark.column
        positions = lc.data = {}
        merged: list[Any] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                merged += value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                continue
            key = self.build(key_node)
            if isinstance(key, (list, dict)):
                raise FastYamlError("a mapping key must be a scalar", key_node.start_mark)
            if key in mapping:
                raise FastYamlError(f"found duplicate key {key!r}", key_node.start_mark)
            mapping[key] = self.build(value_node)
            key_mark, value_mark = key_node.start_mark, value_node.start_mark
            positions[key] = [key_mark.line, key_mark.column, value_mark.line, value_mark.column]
        for source in merged:
            other = self.build(source)
            if not isinstance(other, dict):
                raise FastYamlError("a merge key (<<) takes mappings", source.start_mark)
            for key, value in other.items():
                mapping.setdefault(key, value)
        return mapping


def load(text: str) -> Any:
    """The round-trip tree of ``text``; raises ``yaml.MarkedYAMLError`` or `FastYamlError` on bad YAML."""
    node = yaml.compose(text, Loader=_Loader)
    return None if node is None else _Builder().build(node)


#: What `load` raises on bad YAML besides `FastYamlError` (each with ``problem``, ``problem_mark``, ``context``).
LIBYAML_ERROR: type[Exception] = yaml.YAMLError if AVAILABLE else FastYamlError
