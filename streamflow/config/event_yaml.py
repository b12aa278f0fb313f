"""Pipeline files read straight from libyaml's event stream: plain values, and on demand their positions.

Positions are only needed for error messages, and most files have none. So
a file is read into plain dicts, lists and scalars from the events libyaml's
parser emits — no node graph, no round-trip containers, no position kept —
several times faster than `fast_yaml`'s located tree; `Document` reads it
again with `load_located` (the same values plus a table of positions) only
when it has something to place. The values are those of `fast_yaml`, by the
same rules: plain scalars resolved by YAML 1.2 (`fast_yaml.Scalars`), an
alias is the anchored object itself (shared, as ruamel makes it;
`Document.to_plain` bounds the expansion), merge keys (``<<``) add the keys a
mapping does not have.

This reader only recognises a problem — a syntax error, a duplicate key, a key
that is not a scalar, a bad merge, an undefined or repeated anchor, a second
document — it does not describe it: it raises `Unsure`, and the caller reads
the file with `fast_yaml.load`, which reports the problem at its line exactly
as it always has.
"""

from __future__ import annotations

from typing import Any

import yaml  # type: ignore[import-untyped]
from ruamel.yaml.error import YAMLError as RuamelYAMLError
from yaml import events

from .fast_yaml import MERGE, Scalars

#: Where each container of a located tree is: ``id(container)`` -> (line, column, positions of its
#: items), 0-based; a mapping's items are ``key -> (key line, key column, value line, value column)``,
#: a sequence's ``index -> (line, column)``. Keys brought in by a merge (``<<``) have none.
Positions = dict[int, tuple[int, int, dict[Any, tuple[int, ...]]]]

_NO_KEY = object()  # a mapping waiting for its next key
_MERGE_KEY = object()  # a mapping whose pending key is ``<<``


class Unsure(Exception):
    """The file has a problem (or a construct this reader leaves to `fast_yaml`); read it located."""


def load(text: str) -> Any:
    """The plain values of the single YAML document in ``text`` (None if empty); raises `Unsure`."""
    return _Reader(located=False).read(text)


def load_located(text: str) -> tuple[Any, Positions]:
    """`load`'s values (other objects) and where each of them is in ``text``; raises `Unsure`."""
    reader = _Reader(located=True)
    return reader.read(text), reader.positions


class _Reader:
    """One pass over the events of one document; containers under construction are on a stack."""

    def __init__(self, located: bool) -> None:
        self.located = located
        self.positions: Positions = {}
        self.scalars = Scalars()
        self.anchors: dict[str, Any] = {}
        self.anchor_marks: dict[str, Any] = {}  # where each anchored value starts (located)
        self.containers: list[Any] = []  # the open mappings and sequences, innermost last
        self.keys: list[Any] = []  # per open container: its pending key (mappings), else _NO_KEY
        self.key_marks: list[Any] = []  # per open container: where its pending key is (located)
        self.merges: list[list[Any] | None] = []  # per open container: what its ``<<`` keys merge
        self.root: Any = None
        self.documents = 0

    def read(self, text: str) -> Any:
        """Every event of the stream in order (the loop is the hot path: plain types checked first)."""
        scalar_event, alias_event = events.ScalarEvent, events.AliasEvent
        mapping_start, sequence_start = events.MappingStartEvent, events.SequenceStartEvent
        mapping_end, sequence_end = events.MappingEndEvent, events.SequenceEndEvent
        located = self.located
        try:
            for event in yaml.parse(text, Loader=yaml.CSafeLoader):
                kind = type(event)
                if kind is scalar_event:
                    self.add(self.scalar(event), event.anchor, located and event.start_mark)
                elif kind is mapping_start or kind is sequence_start:
                    self.open({} if kind is mapping_start else [], event.anchor, located and event.start_mark)
                elif kind is mapping_end or kind is sequence_end:
                    self.close()
                elif kind is alias_event:
                    if event.anchor not in self.anchors:
                        raise Unsure(f"undefined alias {event.anchor!r}")
                    # placed where its anchor is, as the located tree of `fast_yaml` places it
                    self.add(self.anchors[event.anchor], None, located and self.anchor_marks[event.anchor])
                elif kind is events.DocumentStartEvent:
                    self.documents += 1
                    if self.documents > 1:
                        raise Unsure("more than one document")
        except (yaml.YAMLError, RuamelYAMLError) as exc:  # a syntax error; a tag ruamel cannot construct
            raise Unsure(str(exc)) from exc
        return self.root

    def scalar(self, event: Any) -> Any:
        tag, value = event.tag, event.value
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return value  # quoted: a string
            if value == "<<":
                return _MERGE_KEY if self.expects_key() else self.scalars.construct(MERGE, value)
            return self.scalars.plain(value)
        if tag == MERGE and self.expects_key():
            return _MERGE_KEY
        return self.scalars.construct(tag, value)

    def expects_key(self) -> bool:
        return bool(self.keys) and self.keys[-1] is _NO_KEY and isinstance(self.containers[-1], dict)

    def open(self, container: Any, anchor: str | None, mark: Any) -> None:
        self.add(container, anchor, mark, opening=True)
        self.containers.append(container)
        self.keys.append(_NO_KEY)
        self.key_marks.append(None)
        self.merges.append(None)
        if mark:
            self.positions[id(container)] = (mark.line, mark.column, {})

    def close(self) -> None:
        container = self.containers.pop()
        self.keys.pop()
        self.key_marks.pop()
        merged = self.merges.pop()
        for source in merged or ():
            if not isinstance(source, dict):
                raise Unsure("a merge key takes mappings")
            for key, value in source.items():
                container.setdefault(key, value)
        if self.keys and self.keys[-1] is _MERGE_KEY:
            self.merge(container)
        elif self.keys and self.keys[-1] is not _NO_KEY:
            self.keys[-1] = _NO_KEY  # a container value completes its mapping entry (added on opening)

    def add(self, value: Any, anchor: str | None, mark: Any, opening: bool = False) -> None:
        """Place ``value`` in the innermost open container (a mapping takes a key, then a value)."""
        if anchor is not None:
            if anchor in self.anchors or value is _MERGE_KEY:
                raise Unsure(f"duplicate anchor {anchor!r}")
            self.anchors[anchor], self.anchor_marks[anchor] = value, mark
        if not self.containers:
            self.root = value
            return
        parent = self.containers[-1]
        if type(parent) is list:
            if mark:
                self.positions[id(parent)][2][len(parent)] = (mark.line, mark.column)
            parent.append(value)
            return
        key = self.keys[-1]
        if key is _NO_KEY:
            if opening or isinstance(value, (dict, list)):
                raise Unsure("a mapping key must be a scalar")
            if value is not _MERGE_KEY and value in parent:
                raise Unsure(f"duplicate key {value!r}")
            self.keys[-1], self.key_marks[-1] = value, mark
        elif key is _MERGE_KEY:
            if not opening:  # a container merged is taken when it closes
                self.merge(value)
        else:
            parent[key] = value
            if mark:
                key_mark = self.key_marks[-1]
                self.positions[id(parent)][2][key] = (key_mark.line, key_mark.column, mark.line, mark.column)
            if not opening:
                self.keys[-1] = _NO_KEY

    def merge(self, value: Any) -> None:
        """The value of a ``<<`` key: the mapping or the mappings it merges into the open mapping."""
        merged = self.merges[-1]
        if merged is None:
            merged = self.merges[-1] = []
        merged += value if isinstance(value, list) else [value]
        self.keys[-1] = _NO_KEY
