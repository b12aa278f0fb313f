"""Secret values of a pipeline's config, known by their type rather than by an env variable's name.

Every password, token and key field of a component config is a pydantic
`SecretStr` (``auth_token``, ``sasl_plain_password``, ``ssl_password``, the
HTTP source's signature ``secret``, ``enrich``'s ``headers`` …). `protect`
hands each such value to the log redaction when a run starts, so that it is
masked as ``***`` in every log line, error summary and dead-letter record —
whatever the environment variable it came from is called, and also when it
was written into a Python pipeline directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

from ..observability.logging import register_secret


def secret_values(value: Any) -> Iterator[str]:
    """Every `SecretStr` value inside ``value`` (a config model, or mappings and lists of them)."""
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for field in type(value).model_fields:
            yield from secret_values(getattr(value, field, None))
    elif isinstance(value, dict):
        for item in value.values():
            yield from secret_values(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from secret_values(item)


def protect(components: Iterable[Any]) -> int:
    """Register the secret values of every component's ``config`` for redaction; how many there were."""
    count = 0
    for component in components:
        for secret in secret_values(getattr(component, "config", None)):
            # a secret-typed field is a secret whatever it is called: register it under a name that says so
            register_secret("SECRET", secret)
            count += 1
    return count
