"""`module:function` references: the only way a config names user code (contract 7)."""

from __future__ import annotations

import difflib
import importlib
import os
import traceback
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
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name and module_name.startswith(exc.name):
            hint = (f" (modules are found on the import path: the working directory {os.getcwd()}, "
                    "a YAML pipeline's own directory, and PYTHONPATH; run from the directory the "
                    "module path is relative to, or add that directory to PYTHONPATH)")
        raise ValueError(f"cannot import module {module_name!r} of {ref!r}: {exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while being imported
        raise ValueError(f"importing module {module_name!r} of {ref!r} failed: "
                         f"{type(exc).__name__}: {exc}{_where(exc)}") from None
    for i, part in enumerate(parts := attr_path.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = f"module {module_name!r}" if i == 0 else repr(f"{module_name}:{'.'.join(parts[:i])}")
            close = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=1)
            meant = f"{module_name}:{'.'.join([*parts[:i], close[0]])}" if close else ""
            hint = f" (did you mean {meant!r}?)" if close else ""
            raise ValueError(f"{owner} has no attribute {part!r}{hint}") from None
    return obj


def _where(exc: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame ``exc`` was raised in."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


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
