"""Environment interpolation of config strings: ``${VAR}``, ``${VAR:-default}``, ``$${`` for a literal ``${``.

``${secret:VAR}`` reads VAR the same way and marks its value as a secret: it is
redacted (``***``) in every log line, error message and dead-letter record,
whatever VAR is called (a plain ``${VAR}`` is redacted only when its name says
it holds a secret: PASSWORD, SECRET, TOKEN, KEY, CREDENTIAL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SECRET_PREFIX = "secret:"


class InterpolationError(ValueError):
    """A ``${...}`` reference cannot be resolved (undefined variable, bad syntax)."""


def interpolate(text: str, env: Mapping[str, str], used: dict[str, str] | None = None) -> str:
    """``text`` with every ``${VAR}`` replaced from ``env``.

    ``${VAR:-default}`` falls back to ``default`` when VAR is unset or empty;
    ``$${`` stands for a literal ``${``. Variables taken from ``env`` are
    recorded in ``used`` (name -> value) so their values can be redacted;
    a ``${secret:VAR}`` is recorded as ``secret:VAR`` (always redacted).
    Raises `InterpolationError` naming every undefined or malformed reference.
    """
    if "${" not in text:
        return text
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        inner = match.group(1)
        if inner is None:
            problems.append("unclosed '${' (write '$${' for a literal '${')")
            return token
        secret = inner.startswith(SECRET_PREFIX)
        name, sep, default = inner.removeprefix(SECRET_PREFIX).partition(":-")
        if not _NAME.match(name):
            problems.append(f"invalid reference '${{{inner}}}': expected ${{NAME}}, ${{NAME:-default}} "
                            "or ${secret:NAME}")
            return token
        value = env.get(name)
        if sep and not value:
            return default
        if value is None:
            problems.append(f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
            return token
        if used is not None:
            used[SECRET_PREFIX + name if secret else name] = value
        return value

    result = _TOKEN.sub(replace, text)
    if problems:
        raise InterpolationError("; ".join(problems))
    return result
