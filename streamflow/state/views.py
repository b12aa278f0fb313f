"""Typed views of a `StateStore` for user functions: `ValueState` and `MapState`, bound to the current key.

How a user function receives its state: a stateful stage declares its states by
name (``state:`` in YAML; the decorator or parameter of the Python API), and the
function takes one extra argument per state, a view object. Before each call the
engine binds every view to the current event's key (`bind`) and the store to
the event's source offset (`StateStore.begin`), so the function only ever sees
its own key's state::

    def count(event: dict, seen: ValueState[int]) -> dict:
        n = seen.get(0) + 1
        seen.set(n)
        return {**event, "count": n}

Values are encoded with orjson: anything JSON can hold (dicts, lists, str,
numbers, bool, None); a tuple comes back as a list. `MapState` keeps a key's
whole mapping as one value, so each change rewrites it: it suits the small
per-key tables of stream processing (counts by category, the last value per
field); state with very many entries per event key wants a `ValueState` per
entry instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar, cast

import orjson

from .stores import StateStore

T = TypeVar("T")
V = TypeVar("V")

_MISSING: Any = object()


def key_bytes(key: bytes | str | None) -> bytes:
    """The store key of an event key (a str is UTF-8 encoded); an event without a key cannot have state."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    raise ValueError("keyed state needs events with a key (set one upstream, e.g. the Kafka message key "
                     "or a `key_field`)")


class _View:
    """A view on a store, bound to one event key at a time."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._key: bytes | None = None

    def bind(self, key: bytes | str | None) -> None:
        """Make the view read and write the state of ``key`` (the current event's key)."""
        self._key = key_bytes(key)

    @property
    def key(self) -> bytes:
        if self._key is None:
            raise RuntimeError(f"state {self.store.name!r} is used outside of an event (no key bound)")
        return self._key

    def _load(self) -> Any:
        raw = self.store.get(self.key)
        return _MISSING if raw is None else orjson.loads(raw)

    def clear(self) -> None:
        """Forget the current key's state."""
        self.store.delete(self.key)


def encode(value: Any) -> bytes:
    """``value`` as JSON bytes of exactly its size.

    orjson returns its bytes in a ~4 KiB allocation whatever the length: kept
    as it is, a 10-byte count would hold 4 KiB per key in a memory store (and
    per changed key until the changelog flush)."""
    return b"%b" % orjson.dumps(value)


class ValueState(_View, Generic[T]):
    """One value per key."""

    def get(self, default: T | None = None) -> T | None:
        """The current key's value, ``default`` when it has none."""
        value = self._load()
        return default if value is _MISSING else cast(T, value)

    def set(self, value: T) -> None:
        """Replace the current key's value."""
        self.store.set(self.key, encode(value))

    def exists(self) -> bool:
        return self.store.get(self.key) is not None


class MapState(_View, Generic[V]):
    """A mapping of str to values per key (a small table: counts by category, last value per field …)."""

    def _map(self) -> dict[str, V]:
        value = self._load()
        return {} if value is _MISSING else cast(dict[str, V], value)

    def _save(self, mapping: dict[str, V]) -> None:
        if mapping:
            self.store.set(self.key, encode(mapping))
        else:
            self.store.delete(self.key)

    def get(self, field: str, default: V | None = None) -> V | None:
        return self._map().get(field, default)

    def set(self, field: str, value: V) -> None:
        mapping = self._map()
        mapping[field] = value
        self._save(mapping)

    def delete(self, field: str) -> None:
        """Remove ``field`` (the key's state goes when its last field does)."""
        mapping = self._map()
        if mapping.pop(field, _MISSING) is not _MISSING:
            self._save(mapping)

    def update(self, fields: dict[str, V]) -> None:
        """Set several fields with one write."""
        mapping = self._map()
        mapping.update(fields)
        self._save(mapping)

    def to_dict(self) -> dict[str, V]:
        """A copy of the current key's mapping."""
        return self._map()

    def __contains__(self, field: object) -> bool:
        return field in self._map()

    def __iter__(self) -> Iterator[str]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())
