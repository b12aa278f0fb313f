"""Functions of the click examples (pipelines/sessions.yaml)."""

from __future__ import annotations

from typing import Any


def with_duration(session: dict[str, Any]) -> dict[str, Any]:
    """A session with ``duration_s``: seconds from its first click to its last (``*_at`` are epoch ms)."""
    return {**session, "duration_s": (session["last_at"] - session["first_at"]) / 1000}
