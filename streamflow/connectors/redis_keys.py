"""`KeyTemplate`: a Redis key made from an event, ``user:{user_id}`` — literal text and dotted field paths.

``{path}`` is replaced by the value of that field of the (mapping) event,
``{{`` and ``}}`` are literal braces; a template without fields is a fixed
key (one list, one stream). A missing field is an error of that event.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

from ..transforms.fields import path_getter


class KeyTemplate:
    """``render(value)``: the key of one event value."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._parts: list[tuple[str, str | None, Callable[[Any], Any] | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"key template {template!r}: {exc}") from None
        for literal, field, spec, conversion in parsed:
            if spec or conversion:
                raise ValueError(f"key template {template!r}: `{{{field}}}` takes no format spec or conversion")
            if field == "":
                raise ValueError(f"key template {template!r}: `{{}}` needs a field name")
            self._parts.append((literal, field, path_getter(field) if field is not None else None))
        #: The key when the template has no fields.
        self.fixed: str | None = template.replace("{{", "{").replace("}}", "}") \
            if all(get is None for _, _, get in self._parts) else None

    def render(self, value: Any) -> str:
        """The key of ``value``; KeyError naming the field when it is missing."""
        if self.fixed is not None:
            return self.fixed
        if not isinstance(value, dict):
            raise TypeError(f"the key template {self.template!r} needs a mapping event, "
                            f"got {type(value).__name__}")
        out = []
        for literal, field, get in self._parts:
            out.append(literal)
            if get is not None:
                found = get(value)
                if found is None:
                    raise KeyError(f"the event has no field {field!r} for the key template {self.template!r}")
                out.append(found.decode() if isinstance(found, bytes) else str(found))
        return "".join(out)
