"""The top level of a YAML pipeline file, and which registry each component section uses."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field

from ..core.registry import SINKS, SOURCES, TRANSFORMS, Lookup
from ..core.settings import PipelineSettings
from ..core.stage import Component

#: A component as written in YAML: ``type`` plus the keys of that type's ``Config``.
ComponentMapping = dict[str, Any]


class PipelineFile(BaseModel):
    """Keys of a pipeline file. Components are checked by their own ``Config`` afterwards."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the pipeline's name (logs, metrics, graphs)")
    plugins: list[str] = Field(default_factory=list, description=(
        "Python modules imported before the components are looked up, so the component types "
        "they register can be used here (the file's directory is on the import path)"))
    settings: PipelineSettings = Field(default_factory=PipelineSettings, description="engine settings")
    source: ComponentMapping | None = Field(None, description="the source (or use `sources`)")
    sources: list[ComponentMapping] | None = Field(None, description="several sources, merged")
    stages: list[ComponentMapping] | None = Field(None, description="transforms, applied in order")
    sink: ComponentMapping | None = Field(None, description="the sink (or use `sinks`)")
    sinks: list[ComponentMapping] | None = Field(None, description="sinks; each may route with `when`")
    dead_letter: ComponentMapping | None = Field(None, description="sink for `on_error: dead_letter`")
    tests: list[dict[str, Any]] | None = Field(None, description=(
        "config unit tests run by `streamflow test` (see the README's \"Testing a pipeline\"); "
        "ignored by `run`"))


@dataclass(frozen=True)
class Section:
    """A top-level key holding components: its registry, and whether it holds a list."""

    key: str
    registry: Lookup[type[Component[Any]]]
    many: bool = False
    #: sinks may carry ``when: module:function`` to receive only the events it selects
    routed: bool = False


SECTIONS = (
    Section("source", SOURCES),
    Section("sources", SOURCES, many=True),
    Section("stages", TRANSFORMS, many=True),
    Section("sink", SINKS, routed=True),
    Section("sinks", SINKS, many=True, routed=True),
    Section("dead_letter", SINKS),
)

#: Pairs of keys of which a file gives exactly one.
ALTERNATIVES = (("source", "sources"), ("sink", "sinks"))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``Model``, ``Model | None``, ``list[Model]`` …)."""
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at ``loc`` inside ``model`` accepts (for "did you mean")."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if current is None:
        return []
    keys = list(current.model_fields)
    keys += [f.alias for f in current.model_fields.values() if f.alias and f.alias not in keys]
    return keys
