"""YAML -> `Pipeline`: parse, override, interpolate, validate every component, then build the graph.

The YAML file is a serialization of the same graph the Python API builds:
each component is looked up in its registry and built from its own
``Config``, then assembled with the `Pipeline` builder methods. Every problem
is collected (not just the first) and raised together as `InvalidConfig`,
before any component is opened — no I/O happens here beyond reading the file
and importing the user modules it names.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..core.errors import ConfigError
from ..core.pipeline import Pipeline
from ..core.refs import resolve
from ..core.stage import Component, Sink, Source, Transform
from ..core.tuning import gc_tuned
from ..observability.logging import register_secret
from .document import Document, KeyPath, format_path
from .errors import InvalidConfig, Issue
from .interpolate import InterpolationError, interpolate
from .overrides import apply_overrides
from .schema import ALTERNATIVES, SECTIONS, PipelineFile, Section
from .validation import describe, validate


@dataclass(frozen=True)
class Built:
    """A constructed component, where it is in the file, and (sinks) its routing predicate."""

    path: KeyPath
    component: Component[Any]
    when: Callable[[Any], bool] | None = None


def load_yaml(path: str | os.PathLike[str], overrides: Iterable[str] = (),
              env: Mapping[str, str] | None = None, check_files: bool = False) -> Pipeline:
    """Build the `Pipeline` described by the YAML file at ``path``.

    ``overrides`` are ``key.path=value`` strings (``--set``); ``env`` defaults
    to ``os.environ``. The file's directory is put on ``sys.path`` so its
    ``module:function`` references may name modules beside it. With
    ``check_files``, inputs that must exist (a file source's ``path``, an
    enrich ``table``) are checked too (`Component.check_inputs`). Raises
    `InvalidConfig` listing every problem found.
    """
    with gc_tuned():
        doc = Document.read(path)
        directory = str(Path(path).resolve().parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        return build(doc, overrides, env, check_files)


def loads_yaml(text: str, filename: str = "<string>", overrides: Iterable[str] = (),
               env: Mapping[str, str] | None = None) -> Pipeline:
    """Like `load_yaml`, from YAML text; ``filename`` is used in error messages."""
    with gc_tuned():
        return build(Document.parse(text, filename), overrides, env)


def build(doc: Document, overrides: Iterable[str] = (), env: Mapping[str, str] | None = None,
          check_files: bool = False) -> Pipeline:
    """Validate ``doc`` and assemble its `Pipeline`; raises `InvalidConfig`.

    Loading runs under `gc_tuned`: a file makes tens of thousands of objects that all stay alive
    until it is built, and the collector's default first generation (700 allocations) traversed
    them again and again — a third of the CPU time of a 1 MB file.
    """
    with gc_tuned():
        return _Builder(doc, os.environ if env is None else env, check_files).build(overrides)


class _Builder:
    """One load of one document: collects issues, then builds the pipeline if there are none."""

    def __init__(self, doc: Document, env: Mapping[str, str], check_files: bool = False) -> None:
        self.doc = doc
        self.env = env
        self.check_files = check_files
        self.issues: list[Issue] = []
        self.used_env: dict[str, str] = {}

    def error(self, path: KeyPath, message: str, at: str = "value", shown: KeyPath | None = None) -> None:
        self.issues.append(self.doc.issue(path, message, at, shown))

    def build(self, overrides: Iterable[str]) -> Pipeline:
        self.issues += apply_overrides(self.doc, overrides)
        data = self.doc.to_plain(self._interpolate)
        for name, value in self.used_env.items():
            register_secret(name, value)
        if not isinstance(data, dict):
            self.error((), "expected a mapping with `name`, `source` and `sinks` at the top level")
            raise InvalidConfig(self.issues)
        top = self._validate(PipelineFile, data, ())
        self._import_plugins(data.get("plugins"))
        self._check_alternatives(data)
        built = {section.key: self._section(section, data.get(section.key)) for section in SECTIONS}
        self._check_names([b for section in SECTIONS for b in built[section.key]])
        if self.issues or not isinstance(top, PipelineFile):
            raise InvalidConfig(self.issues)
        return self._assemble(top, built)

    def _import_plugins(self, plugins: Any) -> None:
        """Import the modules named under ``plugins`` (their components register on import)."""
        if not isinstance(plugins, list):
            return  # a wrong shape is reported by `PipelineFile`
        for i, module in enumerate(plugins):
            if not isinstance(module, str):
                continue
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001 - the user's module failed to import
                self.error(("plugins", i), f"cannot import plugin module {module!r}: {describe(exc)}")

    def _check_alternatives(self, data: dict[str, Any]) -> None:
        for one, many in ALTERNATIVES:
            if data.get(many) == []:
                self.error((many,), f"expected at least one {one}")
            elif data.get(one) is not None and data.get(many) is not None:
                self.error((many,), f"give either `{one}` or `{many}`, not both", at="key")
            elif one not in data and many not in data:
                self.error((), "missing required key", shown=(f"{one} (or {many})",))

    def _check_names(self, built: list[Built]) -> None:
        """Two components given one `name` are an error at the second one's `name`."""
        first: dict[str, Built] = {}
        for b in built:
            name = b.component.config.name
            if name is None:
                continue
            if name in first:
                other = first[name]
                self.error((*b.path, "name"), f"{name!r} is already the name of {format_path(other.path)} "
                           f"(a {other.component.kind}); stage names must be distinct")
            else:
                first[name] = b

    def _section(self, section: Section, value: Any) -> list[Built]:
        """The components of one section; items of the wrong shape are reported by `PipelineFile`."""
        if section.many:
            items: list[tuple[KeyPath, Any]] = (
                [((section.key, i), v) for i, v in enumerate(value)] if isinstance(value, list) else [])
        else:
            items = [((section.key,), value)]
        out: list[Built] = []
        for path, item in items:
            if isinstance(item, dict) and (result := self._component(section, path, item)) is not None:
                out.append(result)
                if self.check_files:
                    for field, problem in result.component.check_inputs():
                        self.error((*path, field), problem)
        return out

    def _assemble(self, top: PipelineFile, built: dict[str, list[Built]]) -> Pipeline:
        pipeline = Pipeline(top.name, **top.settings.model_dump())
        # each section's registry holds only its kind, so the isinstance checks always hold
        for b in built["source"] + built["sources"]:
            assert isinstance(b.component, Source)
            pipeline.source(b.component)
        for b in built["stages"]:
            assert isinstance(b.component, Transform)
            pipeline.transform(b.component)
        for b in built["sink"] + built["sinks"]:
            assert isinstance(b.component, Sink)
            pipeline.sink(b.component, when=b.when)
        for b in built["dead_letter"]:
            assert isinstance(b.component, Sink)
            pipeline.dead_letter(b.component)
        try:
            return pipeline.validate()
        except ConfigError as exc:
            self.error((), str(exc))
            raise InvalidConfig(self.issues) from None

    # -- pieces ---------------------------------------------------------------
    def _interpolate(self, text: str, path: KeyPath) -> str:
        try:
            return interpolate(text, self.env, self.used_env)
        except InterpolationError as exc:
            self.error(path, str(exc))
            return text

    def _validate(self, model: type[BaseModel], data: Any, prefix: KeyPath,
                  extra_keys: Iterable[str] = ()) -> BaseModel | None:
        """``model.model_validate(data)``, its errors recorded as issues under ``prefix``."""
        result, issues = validate(self.doc, model, data, prefix, extra_keys)
        self.issues += issues
        return result

    def _component(self, section: Section, path: KeyPath, mapping: dict[str, Any]) -> Built | None:
        """Look up, validate and construct one component (no I/O: constructors do none)."""
        data = dict(mapping)
        kind = section.registry.kind
        type_name = data.pop("type", None)
        cls: Any = None
        if type_name is None:
            self.error(path, f"missing required key (one of: {', '.join(section.registry.names())})",
                       shown=(*path, "type"))
        elif not isinstance(type_name, str):
            self.error((*path, "type"), f"expected a {kind} type name, got {type_name!r}")
        else:
            try:
                cls = section.registry.get(type_name)  # a registered name or a module:Class path
            except (KeyError, ValueError) as exc:
                self.error((*path, "type"), str(exc).strip('"'))
        when = None
        if section.routed and "when" in data:
            when = self._predicate((*path, "when"), data.pop("when"))
        if cls is None:
            return None
        extra = ["type", "when"] if section.routed else ["type"]
        config = self._validate(cls.Config, data, path, extra)
        if config is None:
            return None
        try:
            return Built(path, cls(config), when)
        except Exception as exc:  # noqa: BLE001 - a constructor rejected its config
            self.error(path, describe(exc))
            return None

    def _predicate(self, path: KeyPath, ref: Any) -> Callable[[Any], bool] | None:
        try:
            fn = resolve(ref)
        except ValueError as exc:
            self.error(path, str(exc))
            return None
        if not callable(fn):
            self.error(path, f"{ref!r} is not callable; expected a 'module:function' predicate")
            return None
        predicate: Callable[[Any], bool] = fn
        return predicate


