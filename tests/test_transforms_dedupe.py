"""dedupe: drop repeated keys within a bounded window (max_keys LRU and/or ttl)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamflow import Batch, Message, Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.stage import StageContext
from streamflow.core.stats import StageStats
from streamflow.transforms.dedupe import Dedupe


def run(values: list[Any], batch_size: int = 100, dead_letter: MemorySink | None = None,
        **options: Any) -> tuple[list[Any], MemorySource, Any]:
    source = MemorySource(values=values, batch_size=batch_size)
    sink = MemorySink()
    p = Pipeline("t").source(source).transform("dedupe", **options).sink(sink)
    if dead_letter is not None:
        p.dead_letter(dead_letter)
    result = p.run(handle_signals=False)
    return sink.values, source, result


def stats_of(result: Any) -> StageStats:
    return next(s for s in result.stats if s.name == "dedupe")


def test_drops_repeated_keys_across_batches_and_acks_them() -> None:
    values = [{"id": i, "n": n} for n, i in enumerate([1, 2, 1, 3, 2, 2, 4])]
    out, source, result = run(values, batch_size=2, key="id")
    assert [v["n"] for v in out] == [0, 1, 3, 6]
    assert stats_of(result).filtered == 3
    assert source.committed == {0: 7}


def test_key_fn_and_nested_key() -> None:
    out, _, _ = run(["a", "A", "b", "B", "a"], key_fn=str.lower)
    assert out == ["a", "b"]
    out, _, _ = run([{"u": {"id": 1}}, {"u": {"id": 1}}, {"u": {"id": 2}}], key="u.id")
    assert out == [{"u": {"id": 1}}, {"u": {"id": 2}}]


def test_max_keys_bound_forgets_the_least_recently_seen() -> None:
    out, _, _ = run(["a", "b", "c", "a"], key_fn=str, max_keys=2)
    assert out == ["a", "b", "c", "a"]  # c evicted a
    out, _, _ = run(["a", "b", "a", "c", "b"], key_fn=str, max_keys=2)
    assert out == ["a", "b", "c", "b"]  # seeing a again kept it; c evicted b
    out, _, _ = run(["a", "b", "c", "a"], key_fn=str, max_keys=3)
    assert out == ["a", "b", "c"]


async def test_ttl_counts_from_the_first_sighting() -> None:
    t = Dedupe(key="id", ttl=10)
    now = [0.0]
    t.seen.clock = lambda: now[0]
    await t.open(StageContext("p", "dedupe", StageStats("dedupe", "transform")))

    async def seen(at: float, *ids: int) -> list[int]:
        now[0] = at
        out = await t.process(Batch([Message({"id": i}) for i in ids]))
        assert isinstance(out, Batch)
        return [m.value["id"] for m in out.messages]

    assert await seen(0, 1, 2, 1) == [1, 2]
    assert await seen(5, 1, 3) == [3]
    assert await seen(9.9, 1, 2) == []
    assert await seen(10, 1, 2, 3) == [1, 2]  # 1 and 2 expired (first seen at 0), 3 not (5)
    assert t.ctx is not None and t.ctx.stats.filtered == 5


def test_events_without_a_key_go_to_the_error_policy() -> None:
    # the failing event in the middle must not make the first one look like a duplicate
    dlq = MemorySink()
    out, source, result = run([{"id": 1}, {"x": 1}, {"id": 2}, {"id": [1]}], key="id",
                              on_error="dead_letter", dead_letter=dlq)
    assert out == [{"id": 1}, {"id": 2}]
    assert [r["payload"] for r in dlq.values] == [{"x": 1}, {"id": [1]}]
    assert stats_of(result).dead_lettered == 2
    assert source.committed == {0: 4}


@pytest.mark.parametrize("options", [{}, {"key": "id", "key_fn": str}, {"key": "id", "max_keys": 0},
                                     {"key": "id", "ttl": 0}, {"key": "a..b"}])
def test_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Dedupe(**options)


def test_async_key_fn_is_rejected() -> None:
    async def key(value: Any) -> Any:
        return value

    with pytest.raises(ValidationError, match="sync"):
        Dedupe(key_fn=key)
