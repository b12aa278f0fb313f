"""A test double of a stage with keyed state whose restores the test moves by hand (no broker)."""

from __future__ import annotations

from streamflow.core.batch import Batch
from streamflow.core.partitions import StateRestore
from streamflow.core.stage import Transform, TransformConfig
from streamflow.state.changelog import RestoreProgress


class RestoringStage(Transform[TransformConfig]):
    """Passes batches on; reports ``restores`` (real `RestoreProgress` records) and is ready once all are done."""

    def __init__(self, name: str, restores: list[RestoreProgress]) -> None:
        super().__init__(name=name)
        self.restores = restores

    def state_restores(self) -> list[StateRestore]:
        return list(self.restores)

    @property
    def ready(self) -> bool:
        return all(r.done for r in self.restores)

    async def process(self, batch: Batch) -> Batch:
        return batch


def finish(progress: RestoreProgress) -> None:
    """Move ``progress`` to the end of its changelog, as `Changelog.restore` does when it returns."""
    progress.records += progress.end - progress.position
    progress.position = progress.end
    progress.done = True
