"""`ConfigModel`, the base of every config model, and readable messages for its validation errors.

A config model rejects unknown keys and never takes a boolean for a number
(pydantic would read ``batch_size: true`` as 1). Its errors read like the
YAML loader's: ``sink 'file': path — Input should be a valid string (got 3)``
instead of pydantic's raw ``ValidationError`` text (`ComponentConfigError`).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


def _numeric(annotation: Any) -> bool:
    """Whether a field of this type holds a number and no boolean (``int``, ``float | None`` …)."""
    if annotation in (int, float):
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _numeric(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_numeric(a) for a in args)
    return False


class ConfigModel(BaseModel):
    """Base of config models: unknown keys are errors, and so is a boolean where a number belongs."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _numeric(field.annotation):
                raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


def error_message(err: Any) -> str:
    """The message of one pydantic error (``exc.errors()`` item), with the rejected value when short."""
    msg: str = err["msg"]
    for prefix in _MESSAGE_PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    value = err.get("input")
    if isinstance(value, (str, int, float, bool)):
        text = repr(value)
        msg += f" (got {text if len(text) <= 60 else text[:57] + '...'})"
    return msg


def error_lines(exc: ValidationError) -> list[str]:
    """One ``field.path — message`` line per error of ``exc``."""
    out = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            out.append(f"{where} — unknown key")
        elif err["type"] == "missing":
            out.append(f"{where} — missing required key")
        else:
            out.append(f"{where} — {error_message(err)}" if where else error_message(err))
    return out
