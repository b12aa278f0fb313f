"""Validating one mapping of a YAML document against a pydantic model, errors located in the file.

Shared by pipeline files (`streamflow.config.loader`) and test files
(`streamflow.testing`): each pydantic error becomes an `Issue` at the line of
the key or value it is about, with "did you mean" for unknown keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..core.configs import error_message
from .document import Document, KeyPath
from .errors import Issue
from .schema import known_keys

M = TypeVar("M", bound=BaseModel)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe(exc: BaseException) -> str:
    """An exception as a config error message (its type named unless it is a plain value error)."""
    return str(exc) if isinstance(exc, (ValueError, KeyError, TypeError)) else f"{type(exc).__name__}: {exc}"


def validate(doc: Document, model: type[M], data: Any, prefix: KeyPath,
             extra_keys: Iterable[str] = ()) -> tuple[M | None, list[Issue]]:
    """``model.model_validate(data)`` and the issues of the mapping at ``prefix`` in ``doc``.

    ``extra_keys`` are keys the caller took out of ``data`` before (offered by "did you mean").
    """
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        extra = list(extra_keys)
        return None, [_issue(doc, err, model, prefix, extra) for err in exc.errors(include_url=False)]
    except Exception as exc:  # noqa: BLE001 - a validator raised something pydantic passes through
        return None, [doc.issue(prefix, describe(exc))]


def _issue(doc: Document, err: Any, model: type[BaseModel], prefix: KeyPath, extra_keys: list[str]) -> Issue:
    loc = tuple(err["loc"])
    full = prefix + loc
    kind = err["type"]
    if kind == "extra_forbidden":
        known = known_keys(model, loc[:-1]) + (extra_keys if len(loc) == 1 else [])
        return doc.issue(full, "unknown key" + (did_you_mean(loc[-1], known) or
                                                (f"; expected one of: {', '.join(known)}" if known else "")),
                         at="key")
    if kind == "missing":
        parent = doc.existing(full[:-1])
        return doc.issue(parent, "missing required key", shown=(*parent, *full[len(parent):]))
    return doc.issue(doc.existing(full), error_message(err))
