"""`Committer`: checkpoints the sources' acknowledged positions, periodically and once at the end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from .stage import Source

log = logging.getLogger("streamflow.runner")


class Committer:
    """Calls `Source.commit` on every source every ``interval`` seconds (contract 2).

    A source commits only what its `AckTracker` released, so committing often
    is safe; a failed commit is logged and retried at the next one.
    """

    def __init__(self, sources: Sequence[Source[Any]], interval: float) -> None:
        self.sources = sources
        self.interval = interval

    async def run(self) -> None:
        """Commit every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            await self.commit_all()

    async def commit_all(self, final: bool = False) -> None:
        """Commit every source now; ``final`` for the last commit of a run (in the log)."""
        for src in self.sources:
            try:
                await (src.commit_final() if final else src.commit())
            except Exception as exc:  # noqa: BLE001 - a failed commit is retried next time
                log.warning("commit of %s failed%s: %s", src.name, " (final)" if final else "", exc)
