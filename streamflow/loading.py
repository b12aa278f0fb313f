"""`load`: find a `Pipeline` from what a user names on the command line.

A target is a YAML file (``pipeline.yaml``), a Python file (``mod.py`` or
``mod.py:attr``) or an importable module (``pkg.mod:attr``). In Python the
attribute (default ``pipeline``) is a `Pipeline` or a function of no
arguments returning one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from .config.loader import load_yaml
from .core.errors import ConfigError
from .core.pipeline import Pipeline

YAML_SUFFIXES = (".yaml", ".yml")
DEFAULT_ATTRIBUTE = "pipeline"


def load(target: str | os.PathLike[str], overrides: Iterable[str] = (), check_files: bool = False) -> Pipeline:
    """The validated `Pipeline` that ``target`` names; raises `ConfigError` (before any I/O).

    ``check_files``: also report inputs that must exist and do not (`Component.check_inputs`).
    """
    text = os.fspath(target)
    location, attr = _split(text)
    overrides = list(overrides)
    if location.endswith(YAML_SUFFIXES):
        if attr is not None:
            raise ConfigError(f"{text}: a YAML file holds one pipeline; name it without ':{attr}'")
        return load_yaml(location, overrides, check_files=check_files)
    if overrides:
        raise ConfigError(f"{text}: --set applies to YAML pipelines only")
    if location.endswith(".py"):
        module = import_path(location)
    elif attr is not None:
        module = _import_module(location)
    else:
        raise ConfigError(f"{text}: expected a .yaml/.yml file, a .py file or 'package.module:attribute'")
    pipeline = pipeline_from(module, attr or DEFAULT_ATTRIBUTE, text)
    if check_files:
        problems = [f"{text}: {stage.kind} {stage.name!r}: {field} — {problem}"
                    for stage in pipeline.stages() for field, problem in stage.check_inputs()]
        if problems:
            raise ConfigError("\n".join(problems))
    return pipeline


def _split(target: str) -> tuple[str, str | None]:
    """``"mod.py:attr"`` -> ``("mod.py", "attr")``; no attribute -> ``(target, None)``."""
    location, sep, attr = target.rpartition(":")
    if sep and location and attr and all(p.isidentifier() for p in attr.split(".")):
        return location, attr
    return target, None


def _failure(what: str, exc: BaseException) -> ConfigError:
    """A ConfigError for an exception raised by user code, naming where it was raised."""
    message = f"{what}: {type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and not isinstance(exc, SyntaxError):
        message += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return ConfigError(message)


def import_path(path: str) -> ModuleType:
    """Import the Python file at ``path`` as a module, its directory on ``sys.path`` (like a script)."""
    file = Path(path).resolve()
    if not file.is_file():
        raise ConfigError(f"{path}: no such file")
    directory = str(file.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = file.stem
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) != str(file):
        name = f"streamflow_user_{file.stem}"  # do not shadow an unrelated module of that name
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import
        sys.modules.pop(name, None)
        raise _failure(f"{path}: importing it failed", exc) from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ConfigError(f"{name}: no such module (is its directory on PYTHONPATH?)") from None
        raise _failure(f"{name}: importing it failed", exc) from exc
    except Exception as exc:  # noqa: BLE001
        raise _failure(f"{name}: importing it failed", exc) from exc


def pipeline_from(module: ModuleType, attr: str, target: str) -> Pipeline:
    """The `Pipeline` at ``module.attr`` (calling it if it is a factory function), validated."""
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(k for k, v in vars(module).items() if isinstance(v, Pipeline))
            hint = f"; pipelines defined there: {', '.join(found)}" if found else ""
            raise ConfigError(f"{target}: module {module.__name__!r} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    if not isinstance(obj, Pipeline) and callable(obj):
        try:
            obj = obj()
        except ConfigError as exc:
            raise ConfigError(f"{target}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - the user's factory failed
            raise _failure(f"{target}: {attr}() failed", exc) from exc
    if not isinstance(obj, Pipeline):
        raise ConfigError(f"{target}: {attr} is a {type(obj).__name__}, expected a Pipeline "
                          "or a function returning one")
    try:
        return obj.validate()
    except ConfigError as exc:
        raise ConfigError(f"{target}: {exc}") from exc
