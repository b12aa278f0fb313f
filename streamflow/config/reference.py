"""Reference documentation generated from the registered components' config models.

`streamflow docs` prints it; the README's component reference is this output.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..core.registry import CODECS, FRAMINGS, SINKS, SOURCES, TRANSFORMS, Lookup
from ..core.stage import ComponentConfig, EventTransformConfig, SourceConfig

REGISTRIES: dict[str, Lookup[type]] = {
    "source": SOURCES, "transform": TRANSFORMS, "sink": SINKS, "codec": CODECS, "framing": FRAMINGS,
}
#: The registries of what stream components compose (``codec:`` and ``framing:`` keys), not components.
FORMATS: dict[str, str] = {
    "codec": "How one payload (a frame, a Kafka record, an event's bytes) decodes into a value and a value "
             "encodes: the `codec` key of the file, stdin, stdout and Kafka connectors and of `parse`.",
    "framing": "Where one frame ends in a byte stream: the `framing` key of the file, stdin and stdout "
               "connectors (default `newline`). A Kafka record or an HTTP body is one message already.",
}
#: Keys (nearly) every component of a kind accepts, documented once instead of per type.
COMMON: dict[str, type[BaseModel]] = {
    "source": SourceConfig, "transform": EventTransformConfig, "sink": ComponentConfig,
}

#: Keys the YAML loader takes out of a component's mapping before its ``Config`` sees them.
ROUTING_ROWS: dict[str, list[str]] = {
    "sink": ["| `when` | module:function | `null` | a predicate of the event's value: the sink receives only "
             "the events for which it is true (under `sink`/`sinks`; not the dead-letter sink) |"],
}


def _summary(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ") if doc else ""


def _type_text(annotation: Any) -> str:
    """A short reader's name for a field type: ``a | b`` for literals, ``mapping`` for models."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " / ".join(str(a) for a in args)
    if origin in (Union, UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (list, tuple, set):
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    if callable(annotation) and getattr(annotation, "__module__", "") == "collections.abc":
        return "module:function"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "…"
        if isinstance(value, BaseModel):
            policy = getattr(value, "policy", None)
            return f"`{policy}`" if policy else "its defaults"
        return f"`{value!r}`" if value not in ({}, []) else f"`{value}`"
    default = field.default
    if default is PydanticUndefined or default is None:
        return "`null`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def _rows(model: type[BaseModel], skip: set[str]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        type_text = _type_text(field.annotation)
        if any(m.__class__.__name__ == "BeforeValidator" for m in field.metadata):
            type_text = "module:function" if "Callable" in str(field.annotation) else type_text
        rows.append(f"| `{field.alias or name}` | {type_text} "
                    f"| {_default(field)} | {description} |")
    return rows


def describe(kind: str, type_name: str) -> str:
    """Markdown of one component type: summary and a table of its own keys."""
    cls = REGISTRIES[kind].get(type_name)
    text = inspect.cleandoc(cls.__doc__ or "") if kind in FORMATS else _summary(cls)
    lines = [f"#### {kind} `{type_name}`", "", text, ""]
    config = getattr(cls, "Config", None)
    if isinstance(config, type) and issubclass(config, BaseModel):
        common = COMMON.get(kind)
        shared = _shared_base(config, common) if common is not None else None
        skip = set(shared.model_fields) if shared is not None else set()
        if common is not None and shared is not None and (missing := set(common.model_fields) - skip):
            lines += [f"Takes the common {kind} keys except {', '.join(f'`{k}`' for k in sorted(missing))}.",
                      ""]
        rows = _rows(config, skip)
        if rows:
            lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


def describe_any(type_name: str) -> str:
    """`describe` of ``type_name`` in every registry that has it (``file`` is a source and a sink).

    Raises ``KeyError`` naming the kinds and, when one is close, the type meant.
    """
    found = [describe(kind, type_name) for kind, registry in REGISTRIES.items() if type_name in registry.names()]
    if found:
        return "\n".join(found)
    every = sorted({name for registry in REGISTRIES.values() for name in registry.names()})
    close = difflib.get_close_matches(type_name, every, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise KeyError(f"no component type {type_name!r}{hint}; KIND is one of {', '.join(REGISTRIES)}; "
                   f"`streamflow docs` lists every type")


def _shared_base(config: type[BaseModel], common: type[BaseModel]) -> type[BaseModel] | None:
    """The most derived of ``common`` and its config bases that ``config`` extends."""
    for base in common.__mro__:
        if isinstance(base, type) and issubclass(base, ComponentConfig) and issubclass(config, base):
            return base
    return None


def list_types(kind: str | None = None) -> str:
    """One line per registered type: kind, name and summary."""
    out = []
    for k, registry in REGISTRIES.items():
        if kind and k != kind:
            continue
        for name in registry.names():
            out.append(f"{k:<10} {name:<12} {_summary(registry.get(name))}")
    return "\n".join(out)


def _builtin(cls: type) -> bool:
    """Shipped with streamflow (plugins and test doubles are left out; `memory` is for tests)."""
    return cls.__module__.startswith("streamflow.") and getattr(cls, "type_name", "") != "memory"


def reference_markdown() -> str:
    """The whole component reference, as the README carries it."""
    parts = ["### Keys every component accepts", ""]
    for kind, model in COMMON.items():
        parts += [f"Every {kind}:", "", "| key | type | default | meaning |", "| --- | --- | --- | --- |",
                  *_rows(model, set()), *ROUTING_ROWS.get(kind, []), ""]
    for kind, registry in REGISTRIES.items():
        parts += [f"### {kind.capitalize()}s", ""]
        if kind in FORMATS:
            parts += [FORMATS[kind], "", f"| {kind} | what it is |", "| --- | --- |"]
            parts += [f"| `{name}` | {_doc_cell(registry.get(name))} |" for name in registry.names()
                      if _builtin(registry.get(name))]
            parts.append("")
        else:
            parts += [describe(kind, name) for name in registry.names() if _builtin(registry.get(name))]
    return "\n".join(parts)


def _doc_cell(cls: type) -> str:
    """A class's whole docstring as one markdown table cell."""
    return " ".join(inspect.cleandoc(cls.__doc__ or "").split()).replace("|", "\\|")


BEGIN, END = "<!-- reference:begin -->", "<!-- reference:end -->"


def update_readme(path: Path) -> None:
    """Replace the text between the reference markers of ``path`` with the current reference."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{reference_markdown()}\n{END}{tail}")


if __name__ == "__main__":
    # python -m streamflow.config.reference [--write README.md]
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        update_readme(Path(sys.argv[2]))
    else:
        sys.stdout.write(reference_markdown())
