"""`InvalidConfig`: every problem found in a pipeline file, each with its file, line and field path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Issue:
    """One problem in a config: where it is, which field, and what was expected.

    ``location`` is ``file.yaml:LINE:COL`` (1-based), or names the ``--set``
    override the value came from.
    """

    location: str
    path: str
    message: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.path:
            return f"{self.location}: {self.path} — {self.message}"
        return f"{self.location}: {self.message}"


class InvalidConfig(ConfigError):
    """A pipeline file has one or more errors; ``issues`` lists all of them, in file order."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line or 1 << 30, i.column))
        super().__init__("\n".join(str(i) for i in self.issues))
