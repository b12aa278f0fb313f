"""set, rename, drop and keep: reshape dict events field by field.

Field names may be dotted paths into nested mappings (``meta.source``). The
operations are compiled once into per-value functions, with a special case for
plain top-level names, and applied in one loop over the batch; an event that
cannot be reshaped (its value is not a mapping) goes to the stage's error policy.
"""

from __future__ import annotations

import copy
import functools
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import Field, field_validator

from ..core.batch import Batch
from ..core.errors import ErrorHandler
from ..core.message import Message
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig, StageContext, Transform

#: Values a field can take as a constant without being copied for every event.
_IMMUTABLE = (str, int, float, bool, bytes, type(None))

_MISSING: Any = object()


# -- dotted paths -------------------------------------------------------------
def split_path(path: str) -> tuple[str, ...]:
    """``"meta.source"`` -> ``("meta", "source")``; rejects empty segments."""
    parts = tuple(path.split("."))
    if not path or not all(parts):
        raise ValueError(f"invalid field path {path!r}")
    return parts


def path_getter(path: str) -> Callable[[Any], Any]:
    """A function reading ``path`` from a mapping: None where any part is missing.

    A value that is not a mapping raises (AttributeError), so the caller's error
    policy sees it.
    """
    parts = split_path(path)
    if len(parts) == 1:
        name = parts[0]
        return lambda value: value.get(name)

    def get(value: Any) -> Any:
        for p in parts:
            if value is None:
                return None
            value = value.get(p)
        return value

    return get


def set_path(value: dict[str, Any], parts: tuple[str, ...], item: Any) -> None:
    """Set ``value[parts[0]]...[parts[-1]] = item``, creating missing mappings on the way."""
    for p in parts[:-1]:
        nxt = value.get(p)
        if nxt is None:
            nxt = value[p] = {}
        elif not isinstance(nxt, dict):
            raise TypeError(f"field {'.'.join(parts)!r}: {p!r} holds a {type(nxt).__name__}, not a mapping")
        value = nxt
    value[parts[-1]] = item


def pop_path(value: dict[str, Any], parts: tuple[str, ...]) -> Any:
    """Remove and return the field at ``parts`` (the `_MISSING` marker when absent)."""
    node: Any = value
    for p in parts[:-1]:
        node = node.get(p)
        if not isinstance(node, dict):
            return _MISSING
    return node.pop(parts[-1], _MISSING)


def _require_mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping event value, got {type(value).__name__}")
    return value


# -- the per-value engine -----------------------------------------------------
VC = TypeVar("VC", bound=EventTransformConfig)


class ValueTransform(Transform[VC]):
    """Base of transforms that rewrite each event value with a sync ``apply(value) -> value``.

    The batch is processed in one loop; an event whose ``apply`` raises goes to
    the stage's error policy and the loop carries on with the next one (events
    already rewritten are not rewritten twice).
    """

    def __init__(self, config: VC | None = None, /, **options: Any) -> None:
        super().__init__(config, **options)
        self.errors = ErrorHandler(self.name, self.config.on_error)

    async def open(self, ctx: StageContext) -> None:
        await super().open(ctx)
        self.errors = ctx.error_handler(self.errors.policy)

    @property
    def cpu_only(self) -> bool:
        return True

    @abstractmethod
    def apply(self, value: Any) -> Any:
        """The new value of one event (may change ``value`` in place and return it)."""

    def fast(self, msgs: list[Message]) -> int:
        """Rewrite ``msgs`` in order until one raises; how many were rewritten.

        Subclasses inline their common case here, stopping (without raising) at
        the first event that needs the careful per-event path.
        """
        apply = self.apply
        for i, m in enumerate(msgs):
            try:
                m.value = apply(m.value)
            except Exception:  # noqa: BLE001 - handled per event by _resume
                return i
        return len(msgs)

    async def process(self, batch: Batch) -> Batch:
        done = self.fast(batch.messages)
        return batch if done == len(batch.messages) else await self._resume(batch, done)

    def _apply_to(self, msg: Message) -> Any:
        return self.apply(msg.value)

    async def _resume(self, batch: Batch, start: int) -> Batch:
        msgs = batch.messages
        out: list[Message] = msgs[:start]
        for m in msgs[start:]:
            try:
                m.value = self.apply(m.value)
            except Exception as exc:  # noqa: BLE001 - the error policy decides
                handled = await self.errors.handle(m, exc, functools.partial(self._apply_to, m), batch)
                if not handled.recovered:
                    continue
                m.value = handled.value
            out.append(m)
        return batch.derive(out)


# -- set -------------------------------------------------------------------------
class SetConfig(EventTransformConfig):
    fields: dict[str, Any] = Field(description="field path -> constant value; dotted paths create "
                                               "nested mappings (`meta.source: kafka`)")

    @field_validator("fields")
    @classmethod
    def _paths(cls, v: dict[str, Any]) -> dict[str, Any]:
        for path in v:
            split_path(path)
        return v


@TRANSFORMS.register("set")
class SetFields(ValueTransform[SetConfig]):
    """Set fields of each (mapping) event to constants."""

    def setup(self) -> None:
        items = list(self.config.fields.items())
        self._flat = {k: v for k, v in items if "." not in k and isinstance(v, _IMMUTABLE)}
        # nested paths and mutable constants (each event gets its own copy)
        self._other = [(split_path(k), v, not isinstance(v, _IMMUTABLE)) for k, v in items
                       if "." in k or not isinstance(v, _IMMUTABLE)]

    def apply(self, value: Any) -> Any:
        _require_mapping(value)
        value.update(self._flat)
        for parts, v, mutable in self._other:
            set_path(value, parts, copy.deepcopy(v) if mutable else v)
        return value

    def fast(self, msgs: list[Message]) -> int:
        if self._other:
            return super().fast(msgs)
        flat = self._flat
        for i, m in enumerate(msgs):  # the common case: one dict.update per event
            v = m.value
            if type(v) is not dict:
                return i
            v.update(flat)
        return len(msgs)


# -- rename ----------------------------------------------------------------------
class RenameConfig(EventTransformConfig):
    fields: dict[str, str] = Field(description="old field path -> new field path; all renames happen "
                                               "at once (`{a: b, b: a}` swaps); missing fields are ignored")

    @field_validator("fields")
    @classmethod
    def _paths(cls, v: dict[str, str]) -> dict[str, str]:
        for old, new in v.items():
            split_path(old)
            split_path(new)
        return v


@TRANSFORMS.register("rename")
class Rename(ValueTransform[RenameConfig]):
    """Rename fields of each (mapping) event."""

    def setup(self) -> None:
        pairs = [(split_path(o), split_path(n)) for o, n in self.config.fields.items()]
        self._pairs = pairs
        self._flat = all(len(o) == 1 and len(n) == 1 for o, n in pairs)
        self._flat_pairs = [(o[0], n[0]) for o, n in pairs] if self._flat else []
        # renaming one after the other equals renaming at once when no new name is an old one
        self._sequential = self._flat and not {n for _, n in self._flat_pairs} & {o for o, _ in self._flat_pairs}

    def apply(self, value: Any) -> Any:
        _require_mapping(value)
        if self._flat:
            moved = [(n, value.pop(o)) for o, n in self._flat_pairs if o in value]
            for n, v in moved:
                value[n] = v
            return value
        taken = [(new, pop_path(value, old)) for old, new in self._pairs]
        for new, item in taken:
            if item is not _MISSING:
                set_path(value, new, item)
        return value

    def fast(self, msgs: list[Message]) -> int:
        if not self._sequential:
            return super().fast(msgs)
        pairs = self._flat_pairs
        for i, m in enumerate(msgs):
            v = m.value
            if type(v) is not dict:
                return i
            for o, n in pairs:
                if o in v:
                    v[n] = v.pop(o)
        return len(msgs)


# -- drop and keep ---------------------------------------------------------------
class FieldListConfig(EventTransformConfig):
    fields: list[str] = Field(description="field paths (dotted for nesting)")

    @field_validator("fields")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for path in v:
            split_path(path)
        return v


FC = TypeVar("FC", bound=FieldListConfig)


class _FieldListTransform(ValueTransform[FC]):
    """A transform over a list of field paths, split into top-level names and nested paths."""

    def setup(self) -> None:
        self._flat = [f for f in self.config.fields if "." not in f]
        self._nested = [split_path(f) for f in self.config.fields if "." in f]

    @staticmethod
    @abstractmethod
    def reshape(value: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        """The value for top-level ``fields`` only (the common case `fast` runs in one loop)."""

    def fast(self, msgs: list[Message]) -> int:
        if self._nested:
            return super().fast(msgs)
        fields, reshape = self._flat, self.reshape
        for i, m in enumerate(msgs):
            v = m.value
            if type(v) is not dict:
                return i
            m.value = reshape(v, fields)
        return len(msgs)


class DropConfig(FieldListConfig):
    fields: list[str] = Field(description="field paths to remove (missing ones are ignored)")


@TRANSFORMS.register("drop")
class Drop(_FieldListTransform[DropConfig]):
    """Remove fields from each (mapping) event."""

    def apply(self, value: Any) -> Any:
        _require_mapping(value)
        for f in self._flat:
            value.pop(f, None)
        for parts in self._nested:
            pop_path(value, parts)
        return value

    @staticmethod
    def reshape(value: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        for f in fields:
            if f in value:
                del value[f]
        return value


class KeepConfig(FieldListConfig):
    fields: list[str] = Field(description="the only field paths to keep (missing ones are left out)")


@TRANSFORMS.register("keep")
class Keep(_FieldListTransform[KeepConfig]):
    """Replace each (mapping) event by a mapping of only the given fields."""

    def apply(self, value: Any) -> Any:
        _require_mapping(value)
        out = {f: value[f] for f in self._flat if f in value}
        for parts in self._nested:
            v: Any = value
            for p in parts:
                v = v.get(p, _MISSING) if isinstance(v, dict) else _MISSING
                if v is _MISSING:
                    break
            if v is not _MISSING:
                set_path(out, parts, v)
        return out

    @staticmethod
    def reshape(value: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        return {f: value[f] for f in fields if f in value}
