"""enrich: lookup tables (json, jsonl, csv) and user functions with cache, timeout and single-flight."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamflow import Batch, Message, Pipeline
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.stage import StageContext
from streamflow.core.stats import StageStats
from streamflow.transforms.enrich import Enrich

USERS = [
    {"id": 1, "name": "ann", "country": "fr"},
    {"id": 2, "name": "bob", "country": "de"},
]


def run(values: list[Any], batch_size: int = 100, dead_letter: MemorySink | None = None,
        **options: Any) -> tuple[MemorySink, MemorySource, Any]:
    source = MemorySource(values=values, batch_size=batch_size)
    sink = MemorySink()
    p = Pipeline("t").source(source).transform("enrich", **options).sink(sink)
    if dead_letter is not None:
        p.dead_letter(dead_letter)
    result = p.run(handle_signals=False)
    return sink, source, result


def stage_stats(result: Any, name: str = "enrich") -> StageStats:
    return next(s for s in result.stats if s.name == name)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# -- tables --------------------------------------------------------------------------
def test_json_table_copies_selected_fields_with_prefix(tmp_path: Path) -> None:
    table = write_json(tmp_path / "users.json", USERS)
    sink, source, result = run([{"user": 1}, {"user": 2}, {"user": 3}], table=str(table), key="user",
                               table_key="id", fields=["name"], prefix="user_")
    assert result.exit_code == 0
    assert sink.values == [{"user": 1, "user_name": "ann"}, {"user": 2, "user_name": "bob"}, {"user": 3}]
    assert source.committed == {0: 3}


def test_all_fields_but_the_key_by_default(tmp_path: Path) -> None:
    table = write_json(tmp_path / "users.json", USERS)
    sink, _, _ = run([{"id": 2, "n": 0}], table=str(table), key="id")
    assert sink.values == [{"id": 2, "n": 0, "name": "bob", "country": "de"}]


def test_csv_table_matches_numeric_keys_and_drops_missing(tmp_path: Path) -> None:
    table = tmp_path / "users.csv"
    table.write_text("id,name,country\n1,ann,fr\n2,bob,de\n")
    sink, source, result = run([{"u": {"id": 2}}, {"u": {"id": 7}}, {"u": {"id": "1"}}],
                               table=str(table), key="u.id", table_key="id", fields=["country"],
                               on_missing="drop")
    assert sink.values == [{"u": {"id": 2}, "country": "de"}, {"u": {"id": "1"}, "country": "fr"}]
    assert stage_stats(result).filtered == 1
    assert source.committed == {0: 3}


def test_jsonl_table_with_default_for_missing(tmp_path: Path) -> None:
    table = tmp_path / "users.jsonl"
    table.write_text("\n".join(json.dumps(u) for u in USERS) + "\n\n")
    sink, _, _ = run([{"id": 1}, {"id": 5}, {}], table=str(table), key="id", fields=["name"],
                     on_missing="default", default={"name": "unknown"})
    assert sink.values == [{"id": 1, "name": "ann"}, {"id": 5, "name": "unknown"}, {"name": "unknown"}]


def test_json_object_table_maps_key_to_row(tmp_path: Path) -> None:
    table = write_json(tmp_path / "codes.json", {"fr": {"label": "France"}, "de": {"label": "Germany"}})
    sink, _, _ = run([{"c": "de"}, {"c": "fr"}], table=str(table), key="c")
    assert sink.values == [{"c": "de", "label": "Germany"}, {"c": "fr", "label": "France"}]


def test_missing_key_goes_to_error_policy(tmp_path: Path) -> None:
    table = write_json(tmp_path / "users.json", USERS)
    dlq = MemorySink()
    sink, source, result = run([{"id": 1}, {"id": 9}, "not a mapping", {"id": 2}], batch_size=10,
                               dead_letter=dlq, table=str(table), key="id", fields=["name"],
                               on_missing="error", on_error="dead_letter")
    assert result.exit_code == 0
    assert sink.values == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
    assert [v["payload"] for v in dlq.values] == [{"id": 9}, "not a mapping"]
    assert "LookupMissing" in dlq.values[0]["error"] and "TypeError" in dlq.values[1]["error"]
    assert source.committed == {0: 4}



def test_every_event_found_and_non_mapping_events_in_one_batch(tmp_path: Path) -> None:
    table = write_json(tmp_path / "users.json", USERS)
    dlq = MemorySink()
    sink, _, result = run([{"id": 1}, {"id": 2}], table=str(table), key="id", fields=["name"])
    assert sink.values == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
    sink, _, result = run([{"id": 1}, ["id", 2], {"id": 2}], dead_letter=dlq, table=str(table), key="id",
                          fields=["name"], on_error="dead_letter")
    assert sink.values == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]
    assert [v["payload"] for v in dlq.values] == [["id", 2]]


def test_events_without_the_key_never_match_a_row_keyed_null(tmp_path: Path) -> None:
    table = tmp_path / "users.jsonl"
    table.write_text('{"id": null, "name": "nobody"}\n{"id": 1, "name": "ann"}\n')
    sink, _, _ = run([{"id": 1}, {"other": 0}, {"id": None}], table=str(table), key="id", fields=["name"])
    assert sink.values == [{"id": 1, "name": "ann"}, {"other": 0}, {"id": None}]


def test_numeric_event_keys_match_string_table_keys(tmp_path: Path) -> None:
    table = tmp_path / "users.csv"
    table.write_text("id,name\n1,ann\n2,bob\n")
    sink, _, _ = run([{"id": 2}, {"id": "1"}], table=str(table), key="id", fields=["name"])
    assert sink.values == [{"id": 2, "name": "bob"}, {"id": "1", "name": "ann"}]

def test_rows_that_hold_the_key_field_merge_once_from_the_events_own_key(tmp_path: Path) -> None:
    # merging a row rewrites the event's key field: a batch that cannot be merged whole (the last event has
    # no row) must not look up the already merged events again under their new key
    table = write_json(tmp_path / "users.json", [{"id": 1, "user": 2, "name": "ann"},
                                                 {"id": 2, "user": 1, "name": "bob"}])
    sink, _, _ = run([{"user": 1}, {"user": 2}, {"user": 5}], table=str(table), key="user", table_key="id",
                     on_missing="default", default={"name": "?"})
    assert sink.values == [{"user": 2, "name": "ann"}, {"user": 1, "name": "bob"}, {"user": 5, "name": "?"}]


def test_missing_key_with_fail_policy_fails_the_pipeline(tmp_path: Path) -> None:
    table = write_json(tmp_path / "users.json", USERS)
    _, source, result = run([{"id": 1}, {"id": 9}], table=str(table), key="id", on_missing="error")
    assert result.exit_code == 1
    assert source.committed == {}


def test_relative_table_path_is_resolved_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    write_json(tmp_path / "data" / "users.json", USERS)
    monkeypatch.chdir(tmp_path)
    sink, _, _ = run([{"id": 1}], table="data/users.json", key="id", fields=["name"])
    assert sink.values == [{"id": 1, "name": "ann"}]


def test_base_dir_rebases_a_relative_table_path(tmp_path: Path) -> None:
    write_json(tmp_path / "users.json", USERS)
    t = Enrich(table="users.json", key="id", base_dir=str(tmp_path))
    assert t.table_path() == tmp_path / "users.json"
    sink, _, _ = run([{"id": 2}], table="users.json", key="id", fields=["name"], base_dir=str(tmp_path))
    assert sink.values == [{"id": 2, "name": "bob"}]


def test_unreadable_table_fails_at_start(tmp_path: Path) -> None:
    sink, source, result = run([{"id": 1}], table=str(tmp_path / "nope.json"), key="id")
    assert result.exit_code == 1 and "nope.json" in str(result.error)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"name": "no id"}]')
    _, _, result = run([{"id": 1}], table=str(bad), key="id")
    assert result.exit_code == 1 and "row 1" in str(result.error)


@pytest.mark.parametrize("options, message", [
    ({"key": "id"}, "exactly one of"),
    ({"table": "t.json", "fn": "json:loads", "key": "id"}, "exactly one of"),
    ({"table": "t.json"}, "needs `key`"),
    ({"table": "t.txt", "key": "id"}, "format"),
    ({"fn": "json:loads", "cache": {"max_size": 10}}, "cache` needs `key`"),
    ({"table": "t.json", "key": "id", "timeout": 1}, "apply to `fn`"),
    ({"table": "t.json", "key": "id", "default": {"a": 1}}, "on_missing: default"),
    ({"table": "t.json", "key": "id", "unknown": 1}, "unknown — unknown key"),
    ({"fn": "json:nope", "key": "id"}, "no attribute"),
    ({"table": "t.json", "key": "a..b"}, "invalid field path"),
])
def test_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Enrich(**options)
    assert message in str(info.value)


def test_format_given_explicitly_overrides_suffix(tmp_path: Path) -> None:
    table = tmp_path / "users.txt"
    table.write_text("id,name\n1,ann\n")
    sink, _, _ = run([{"id": 1}], table=str(table), format="csv", key="id")
    assert sink.values == [{"id": 1, "name": "ann"}]


# -- functions -----------------------------------------------------------------------
class Lookup:
    """A counting async lookup: {"name": key.upper()}, None for "none", raises for "bad"."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[Any] = []
        self.delay = delay

    async def __call__(self, key: Any) -> dict[str, Any] | None:
        self.calls.append(key)
        await asyncio.sleep(self.delay)
        if key == "bad":
            raise ValueError("lookup failed")
        if key == "slow":
            await asyncio.sleep(30)
        if key == "none":
            return None
        return {"name": key.upper(), "len": len(key)}


def test_sync_function_with_key_and_string_reference() -> None:
    sink, _, _ = run([{"extra": '{"a": 1}'}, {"extra": '{"b": 2}'}], fn="json:loads", key="extra")
    assert sink.values == [{"extra": '{"a": 1}', "a": 1}, {"extra": '{"b": 2}', "b": 2}]


def test_function_without_key_gets_the_whole_value() -> None:
    seen: list[Any] = []

    def tag(value: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(value))
        return {"size": len(value)}

    sink, _, _ = run([{"a": 1}, {"a": 1, "b": 2}], fn=tag)
    assert sink.values == [{"a": 1, "size": 1}, {"a": 1, "b": 2, "size": 2}]
    assert seen == [{"a": 1}, {"a": 1, "b": 2}]


def test_cache_answers_repeated_keys_across_batches() -> None:
    lookup = Lookup()
    keys = ["a", "b", "a", "a", "b", "c", "a"]
    sink, source, _ = run([{"k": k} for k in keys], batch_size=2, fn=lookup, key="k", fields=["name"],
                          cache={"max_size": 10})
    assert sink.values == [{"k": k, "name": k.upper()} for k in keys]
    assert lookup.calls == ["a", "b", "c"]
    assert source.committed == {0: len(keys)}


def test_without_cache_every_event_calls() -> None:
    lookup = Lookup()
    keys = ["a", "b", "a"]
    sink, _, _ = run([{"k": k} for k in keys], batch_size=1, fn=lookup, key="k", fields=["name"])
    assert lookup.calls == keys
    assert sink.values == [{"k": k, "name": k.upper()} for k in keys]


def test_cache_size_bound_evicts_least_recently_used() -> None:
    lookup = Lookup()
    keys = ["a", "b", "a", "c", "b", "a"]  # max_size 2: c evicts b (a was used more recently)
    run([{"k": k} for k in keys], batch_size=1, fn=lookup, key="k", cache={"max_size": 2})
    assert lookup.calls == ["a", "b", "c", "b", "a"]


async def test_cache_ttl_expires_entries() -> None:
    lookup = Lookup()
    t = Enrich(fn=lookup, key="k", fields=["name"], cache={"max_size": 10, "ttl": 5})
    now = [100.0]
    assert t.cache is not None
    t.cache.clock = lambda: now[0]
    await t.open(StageContext("p", "enrich", StageStats("enrich", "transform")))
    for step in (0.0, 4.9, 0.2):  # 100, 104.9 (cached), 105.1 (expired)
        now[0] += step
        out = await t.process(Batch([Message({"k": "a"})]))
        assert isinstance(out, Batch) and out.messages[0].value == {"k": "a", "name": "A"}
    assert lookup.calls == ["a", "a"]
    await t.close()


def test_single_flight_shares_one_call_per_key() -> None:
    lookup = Lookup(delay=0.01)
    keys = ["x"] * 6 + ["y"] * 2
    sink, _, _ = run([{"k": k} for k in keys], fn=lookup, key="k", fields=["len"], concurrency=8)
    assert sorted(lookup.calls) == ["x", "y"]
    assert sink.values == [{"k": k, "len": 1} for k in keys]


def test_concurrency_keeps_order_and_bounds_calls_in_flight() -> None:
    in_flight = [0]
    peak = [0]

    async def slow(key: int) -> dict[str, Any]:
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.001 * (key % 3))
        in_flight[0] -= 1
        return {"double": key * 2}

    sink, _, _ = run([{"k": i} for i in range(40)], batch_size=10, fn=slow, key="k", concurrency=4)
    assert sink.values == [{"k": i, "double": i * 2} for i in range(40)]
    assert 1 < peak[0] <= 4


def test_function_failure_skip() -> None:
    lookup = Lookup()
    sink, source, result = run([{"k": "a"}, {"k": "bad"}, {"k": "b"}], fn=lookup, key="k",
                               fields=["name"], on_error="skip")
    assert sink.values == [{"k": "a", "name": "A"}, {"k": "b", "name": "B"}]
    stats = stage_stats(result)
    assert (stats.errors, stats.skipped) == (1, 1)
    assert source.committed == {0: 3}


def test_function_failure_dead_letter() -> None:
    dlq = MemorySink()
    sink, source, result = run([{"k": "bad"}, {"k": "a"}], fn=Lookup(), key="k", fields=["name"],
                               on_error="dead_letter", dead_letter=dlq)
    assert sink.values == [{"k": "a", "name": "A"}]
    assert len(dlq.values) == 1
    record = dlq.values[0]
    assert record["payload"] == {"k": "bad"} and record["stage"] == "enrich"
    assert record["error"] == "ValueError: lookup failed"
    assert source.committed == {0: 2}


def test_timeout_skip_and_dead_letter() -> None:
    sink, _, result = run([{"k": "a"}, {"k": "slow"}], fn=Lookup(), key="k", fields=["name"],
                          timeout=0.05, on_error="skip")
    assert sink.values == [{"k": "a", "name": "A"}]
    assert stage_stats(result).skipped == 1
    dlq = MemorySink()
    sink, source, _ = run([{"k": "slow"}, {"k": "b"}], fn=Lookup(), key="k", fields=["name"],
                          timeout=0.05, on_error="dead_letter", dead_letter=dlq, concurrency=2)
    assert sink.values == [{"k": "b", "name": "B"}]
    assert [r["error"].split(":")[0] for r in dlq.values] == ["TimeoutError"]
    assert source.committed == {0: 2}


def test_failures_are_not_cached_and_retry_succeeds() -> None:
    attempts: list[str] = []

    async def flaky(key: str) -> dict[str, Any]:
        attempts.append(key)
        if len(attempts) == 1:
            raise ConnectionError("blip")
        return {"ok": True}

    sink, _, result = run([{"k": "a"}, {"k": "a"}], batch_size=1, fn=flaky, key="k",
                          cache={"max_size": 4}, on_error={"policy": "retry", "backoff": 0.001})
    assert sink.values == [{"k": "a", "ok": True}, {"k": "a", "ok": True}]
    assert attempts == ["a", "a"]  # the retry called again; the second event hit the cache
    assert stage_stats(result).retries == 1


def test_function_none_and_bad_result() -> None:
    sink, _, _ = run([{"k": "none"}, {"k": "a"}], fn=Lookup(), key="k", fields=["name"],
                     on_missing="drop")
    assert sink.values == [{"k": "a", "name": "A"}]

    def wrong(key: Any) -> Any:
        return [key]

    sink, _, result = run([{"k": 1}], fn=wrong, key="k", on_error="skip")
    assert sink.values == [] and stage_stats(result).errors == 1
