"""`Committer`: a failed checkpoint is logged and its positions are committed by the next commit (contract 2)."""

from __future__ import annotations

from typing import Any

import pytest

from streamflow.core.batch import Batch
from streamflow.core.commits import Committer
from streamflow.core.stage import Source, SourceConfig


class Flaky(Source[SourceConfig]):
    """Fails its first checkpoint; records the ones that succeed."""

    def setup(self) -> None:
        self.fail_next = True
        self.committed: list[dict[Any, Any]] = []

    async def read(self) -> Batch | None:
        return None

    async def checkpoint(self, positions: dict[Any, Any]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("coordinator moved")
        self.committed.append(dict(positions))


async def test_a_failed_commit_is_logged_and_retried_by_the_next(caplog: pytest.LogCaptureFixture) -> None:
    flaky, healthy = Flaky(name="flaky"), Flaky(name="healthy")
    healthy.fail_next = False
    for src in (flaky, healthy):
        src.tracker.track(0, 10).release()
    committer = Committer([flaky, healthy], interval=1.0)
    await committer.commit_all()
    assert flaky.committed == [] and healthy.committed == [{0: 10}]  # one failure does not stop the others
    assert "commit of flaky failed: coordinator moved" in caplog.text
    await committer.commit_all(final=True)
    assert flaky.committed == [{0: 10}]
