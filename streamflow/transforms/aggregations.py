"""Aggregations a window folds its events into: a registry of small, mergeable folds.

Each aggregation keeps a state per window: `step` folds one value in,
`merge` combines the states of two windows (session windows merge when an
event bridges them), `result` reads the output. Built in: count, sum, min, max,
mean, first, last, collect and count_distinct; add one with
``@aggregation("name")``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .fields import path_getter

__all__ = ["AGGREGATIONS", "Aggregation", "aggregation", "hashable", "parse_aggregate"]


class Aggregation(ABC):
    """An incremental aggregation: `step` folds one field value into a state, `result` reads it.

    `step` must not mutate ``state`` (it returns the new one), so an event that
    fails one aggregation leaves the others untouched — unless the class sets
    ``in_place``: then the state starts as ``initial = None``, `step` creates
    its container on the first value and updates it afterwards, and `check`
    raises for a value `step` would fail on; the window calls `check` of every
    in-place aggregation before it steps any. Values that are None (missing
    fields) are never passed to `step`. With ``timed``, `step` receives
    ``(event_time, value)`` instead of the value.
    """

    #: Whether the aggregation reads a field (`count` may count events instead).
    needs_field: ClassVar[bool] = True
    initial: ClassVar[Any] = None
    #: `step` receives ``(event_time, value)``.
    timed: ClassVar[bool] = False
    #: The state is a container `step` updates in place (see the class docstring).
    in_place: ClassVar[bool] = False

    @abstractmethod
    def step(self, state: Any, x: Any) -> Any:
        """The state after folding in the value ``x`` (never None)."""

    def merge(self, a: Any, b: Any) -> Any:
        """The state of the union of two windows with states ``a`` (the earlier) and ``b``.

        It must not change ``a`` or ``b`` (a sliding window's panes are shared
        by several windows); it may return one of them.
        """
        raise NotImplementedError(f"aggregation {type(self).__name__} cannot merge windows")

    def check(self, x: Any) -> None:
        """Raise if `step` would fail on ``x`` (in-place aggregations only)."""
        return None

    def result(self, state: Any) -> Any:
        return state

    def dump(self, state: Any) -> Any:
        """``state`` as JSON data: a state store keeps open windows as JSON (tuples come back as lists)."""
        return state

    def load(self, data: Any) -> Any:
        """The state a `dump` was made of."""
        return data


def hashable(data: Any) -> Any:
    """JSON data with its lists turned into tuples, so it can be a key or a set member again."""
    return tuple(hashable(x) for x in data) if isinstance(data, list) else data


#: Aggregation name -> class; add one with `@aggregation("name")`.
AGGREGATIONS: dict[str, type[Aggregation]] = {}


def aggregation(name: str) -> Callable[[type[Aggregation]], type[Aggregation]]:
    """Class decorator registering an `Aggregation` under ``name``."""
    def register(cls: type[Aggregation]) -> type[Aggregation]:
        AGGREGATIONS[name] = cls
        return cls
    return register


def mergeable(cls: type[Aggregation]) -> bool:
    """Whether ``cls`` overrides `Aggregation.merge` (session windows need it)."""
    return cls.merge is not Aggregation.merge


def number(x: Any) -> int | float:
    """``x`` if it is an int or float (not a bool); TypeError otherwise."""
    value: int | float = x
    cls = x.__class__
    if cls is int or cls is float:
        return value
    if cls is bool or not isinstance(x, (int, float)):
        raise TypeError(f"expected a number, got {type(x).__name__} {x!r}")
    return value


def _pick(a: Any, b: Any, keep_a: Callable[[Any, Any], bool]) -> Any:
    """``a`` or ``b``, whichever is not None; if both, ``a`` when ``keep_a(a, b)``."""
    if a is None:
        return b
    if b is None or keep_a(a, b):
        return a
    return b


@aggregation("count")
class Count(Aggregation):
    """Number of events (with a field: of events where it is present and not null)."""

    needs_field = False
    initial = 0

    def step(self, state: int, x: Any) -> int:
        return state + 1

    def merge(self, a: int, b: int) -> int:
        return a + b


@aggregation("sum")
class Sum(Aggregation):
    """Sum of a numeric field."""

    initial = 0

    def step(self, state: int | float, x: Any) -> int | float:
        return state + number(x)

    def merge(self, a: int | float, b: int | float) -> int | float:
        return a + b


@aggregation("min")
class Min(Aggregation):
    """Smallest value of a field (null for a window without values)."""

    def step(self, state: Any, x: Any) -> Any:
        return x if state is None or x < state else state

    def merge(self, a: Any, b: Any) -> Any:
        return _pick(a, b, lambda a, b: not b < a)


@aggregation("max")
class Max(Aggregation):
    """Largest value of a field (null for a window without values)."""

    def step(self, state: Any, x: Any) -> Any:
        return x if state is None or x > state else state

    def merge(self, a: Any, b: Any) -> Any:
        return _pick(a, b, lambda a, b: not b > a)


@aggregation("mean")
class Mean(Aggregation):
    """Arithmetic mean of a numeric field (null for a window without values)."""

    initial = (0, 0)

    def step(self, state: tuple[int | float, int], x: Any) -> tuple[int | float, int]:
        return state[0] + number(x), state[1] + 1

    def merge(self, a: tuple[int | float, int], b: tuple[int | float, int]) -> tuple[int | float, int]:
        return a[0] + b[0], a[1] + b[1]

    def result(self, state: tuple[int | float, int]) -> float | None:
        return state[0] / state[1] if state[1] else None

    def load(self, data: list[int | float]) -> tuple[int | float, int]:
        return data[0], int(data[1])


@aggregation("first")
class First(Aggregation):
    """Value of the field in the event with the earliest event time (ties: the first to arrive)."""

    timed = True

    def step(self, state: tuple[float, Any] | None, x: tuple[float, Any]) -> tuple[float, Any]:
        return x if state is None or x[0] < state[0] else state

    def merge(self, a: Any, b: Any) -> Any:
        return _pick(a, b, lambda a, b: a[0] <= b[0])

    def result(self, state: tuple[float, Any] | None) -> Any:
        return None if state is None else state[1]

    def load(self, data: list[Any] | None) -> tuple[float, Any] | None:
        return None if data is None else (data[0], data[1])


@aggregation("last")
class Last(First):
    """Value of the field in the event with the latest event time (ties: the last to arrive)."""

    def step(self, state: tuple[float, Any] | None, x: tuple[float, Any]) -> tuple[float, Any]:
        return x if state is None or x[0] >= state[0] else state

    def merge(self, a: Any, b: Any) -> Any:
        return _pick(a, b, lambda a, b: a[0] > b[0])


@aggregation("collect")
class Collect(Aggregation):
    """List of the field's values, in arrival order (merged windows: the earlier window's first)."""

    in_place = True

    def step(self, state: list[Any] | None, x: Any) -> list[Any]:
        if state is None:
            return [x]
        state.append(x)
        return state

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return b if a is None else a + b if b else a

    def result(self, state: list[Any] | None) -> list[Any]:
        return [] if state is None else state


@aggregation("count_distinct")
class CountDistinct(Aggregation):
    """Number of distinct values of a field (values must be hashable: strings, numbers, …)."""

    in_place = True

    def check(self, x: Any) -> None:
        try:
            hash(x)
        except TypeError:
            raise TypeError(f"count_distinct needs hashable values, got {type(x).__name__} {x!r}") from None

    def step(self, state: set[Any] | None, x: Any) -> set[Any]:
        if state is None:
            return {x}
        state.add(x)
        return state

    def merge(self, a: set[Any] | None, b: set[Any] | None) -> set[Any] | None:
        if a is None or b is None:
            return b if a is None else a
        return a | b

    def result(self, state: set[Any] | None) -> int:
        return 0 if state is None else len(state)

    def dump(self, state: set[Any] | None) -> list[Any] | None:
        return None if state is None else list(state)

    def load(self, data: list[Any] | None) -> set[Any] | None:
        return None if data is None else {hashable(x) for x in data}


def parse_aggregate(name: str, spec: Any) -> tuple[str, str | None]:
    """``(aggregation, field)`` of one ``aggregate`` entry.

    ``count: null`` (the output name is the aggregation), ``n: count`` (an
    aggregation name), or ``total: {sum: amount}`` (aggregation: field).
    """
    if spec is None:
        op, field = name, None
    elif isinstance(spec, str):
        op, field = spec, None
    elif isinstance(spec, Mapping) and len(spec) == 1:
        ((op, field),) = spec.items()
    else:
        raise ValueError(f"aggregate {name!r}: expected null, an aggregation name or "
                         f"{{aggregation: field}}, got {spec!r}")
    cls = AGGREGATIONS.get(op)
    if cls is None:
        raise ValueError(f"aggregate {name!r}: unknown aggregation {op!r}; expected one of: "
                         f"{', '.join(sorted(AGGREGATIONS))}")
    if field is None and cls.needs_field:
        raise ValueError(f"aggregate {name!r}: {op} needs a field, as in `{name}: {{{op}: field}}`")
    if field is not None:
        if not isinstance(field, str):
            raise ValueError(f"aggregate {name!r}: the field must be a name, got {field!r}")
        path_getter(field)
    return op, field
