"""Plain counters each stage keeps; metrics and progress read them, the hot path only adds."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class StageStats:
    """Counters of one stage. Incremented with plain attribute adds (cheap)."""

    name: str
    kind: str
    events_in: int = 0
    events_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    errors: int = 0
    retries: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    #: Blank or whitespace-only frames passed over (no event for the json and csv codecs).
    blank: int = 0
    #: Events behind the watermark (a window's late events, wherever `late` sends them).
    late: int = 0
    busy_seconds: float = 0.0
    #: Monotonic time of the first batch a source read (sources) / the last batch written (sinks).
    first_event_at: float = 0.0
    last_event_at: float = 0.0
    commits: int = 0
    commit_errors: int = 0

    def count(self, what: str, n: int = 1) -> None:
        setattr(self, what, getattr(self, what) + n)

    def snapshot(self) -> dict[str, int | float | str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
