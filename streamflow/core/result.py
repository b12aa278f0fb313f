"""How a run ended (`RunResult`, the ``EXIT_*`` codes) and the observer of its hot path (`RunnerHooks`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .batch import Batch
from .stats import StageStats

#: Exit codes of `streamflow run`.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_ABORTED = 0, 1, 2, 130


class RunnerHooks:
    """Observer of the hot path (metrics); called once per batch, never per event."""

    def batch_processed(self, stats: StageStats, batch: Batch, seconds: float) -> None:
        """A transform finished `process` on ``batch`` after ``seconds``."""

    def batch_written(self, stats: StageStats, batch: Batch, seconds: float) -> None:
        """A sink durably wrote ``batch`` after ``seconds``."""


@dataclass
class RunResult:
    """How a run ended and what it did."""

    exit_code: int
    reason: str
    elapsed: float
    stats: list[StageStats] = field(default_factory=list)
    error: BaseException | None = None

    def _total(self, kind: str, attr: str) -> int:
        return sum(getattr(s, attr) for s in self.stats if s.kind == kind)

    @property
    def events_in(self) -> int:
        """Events the sources produced."""
        return self._total("source", "events_out")

    @property
    def events_out(self) -> int:
        """Events the (non dead-letter) sinks wrote."""
        return self._total("sink", "events_out")

    @property
    def errors(self) -> int:
        """Events every stage failed on, whatever its error policy did with them."""
        return sum(s.errors for s in self.stats)

    @property
    def dead_lettered(self) -> int:
        """Events written to the dead-letter sink."""
        return sum(s.dead_lettered for s in self.stats)

    @property
    def active_seconds(self) -> float:
        """Seconds from the first event read to the last one written: the span events flowed in.

        Unlike `elapsed` it leaves out start-up and the time a source waited for
        input with nothing in flight at either end of the run.
        """
        firsts = [s.first_event_at for s in self.stats if s.kind == "source" and s.first_event_at]
        lasts = [s.last_event_at for s in self.stats if s.kind in ("sink", "dead_letter") and s.last_event_at]
        return max(0.0, max(lasts) - min(firsts)) if firsts and lasts else 0.0

    def summary(self, reason: bool = True) -> str:
        """One line for the end of `streamflow run` (``reason=False``: the outcome without the reason)."""
        active = self.active_seconds
        head = self.reason if reason else self.reason.split(":", 1)[0]
        rate = (f" ({self.events_in / active:,.0f} events/s over the {active:.2f}s events flowed)"
                if active > 0 else "")
        return (f"{head}: {self.events_in} in, {self.events_out} out, {self.errors} errors, "
                f"{self.dead_lettered} dead-lettered in {self.elapsed:.2f}s{rate}")
