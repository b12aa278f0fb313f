"""`module:function` references: the only way a config names user code (contract 7)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute. Nothing is eval-ed."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ValueError(f"expected a 'module:function' import path, got {ref!r}")
    module_name, _, attr_path = ref.partition(":")
    if not module_name or not attr_path or not all(p.isidentifier() for p in attr_path.split(".")) \
            or not all(p.isidentifier() for p in module_name.split(".")):
        raise ValueError(f"expected a 'module:function' import path, got {ref!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r} of {ref!r}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    return obj


def _to_callable(value: object) -> Callable[..., Any]:
    if isinstance(value, str):
        value = resolve(value)
    if not callable(value):
        raise ValueError(f"expected a callable or a 'module:function' path, got {value!r}")
    return value


def name_of(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a function, as a config would name it."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}:{getattr(fn, '__qualname__', repr(fn))}"


FunctionRef = Annotated[
    Callable[..., Any],
    BeforeValidator(_to_callable),
    PlainSerializer(name_of, return_type=str),
]
"""A config field holding user code: a callable in Python, a ``module:function`` string in YAML."""
