"""generator source: determinism, count, template kinds, JSON bytes, malformed events, pacing."""

from __future__ import annotations

import re
import string
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.connectors.files_sink import FileSink
from streamflow.connectors.generator import FIELD_KINDS, GeneratorSource
from streamflow.connectors.memory import MemorySink
from streamflow.core.runner import EXIT_OK

TEMPLATE = {
    "id": {"seq": True},
    "order": {"seq": 1000},
    "user": {"choice": ["ann", "bob", "cy"]},
    "qty": {"int": [1, 5]},
    "amount": {"float": [10, 20]},
    "score": {"normal": [100, 1]},
    "ref": {"uuid": True},
    "code": {"string": 6},
    "shop": {"object": {"country": {"choice": ["fr", "de"]}, "open": True}},
    "tags": {"const": {"seq": "not a generator"}},
    "list": [1, 2],
    "source": "web",
}


def generate(**options) -> MemorySink:
    out = MemorySink()
    r = Pipeline("t").source(GeneratorSource(**options)).sink(out).run(handle_signals=False)
    assert r.exit_code == EXIT_OK
    return out


def test_count_and_positions() -> None:
    out = generate(count=2500, batch_size=1000)
    assert [orjson.loads(v)["id"] for v in out.values] == list(range(2500))
    assert [m.offset for m in out.messages] == list(range(2500))
    assert {m.partition for m in out.messages} == {0}
    assert generate(count=0).values == []


def test_template_kinds_as_objects() -> None:
    values = generate(count=500, seed=3, template=TEMPLATE, format="object").values
    assert [v["id"] for v in values] == list(range(500))
    assert [v["order"] for v in values] == list(range(1000, 1500))
    assert {v["user"] for v in values} == {"ann", "bob", "cy"}
    assert {v["qty"] for v in values} == {1, 2, 3, 4, 5}
    assert all(10 <= v["amount"] <= 20 for v in values)
    mean = sum(v["score"] for v in values) / len(values)
    assert 99 < mean < 101 and len({v["score"] for v in values}) == 500
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", v["ref"])
               for v in values)
    assert len({v["ref"] for v in values}) == 500
    assert all(len(v["code"]) == 6 and set(v["code"]) <= set(string.ascii_letters) for v in values)
    assert {v["shop"]["country"] for v in values} == {"fr", "de"} and all(v["shop"]["open"] for v in values)
    assert all(v["tags"] == {"seq": "not a generator"} and v["source"] == "web" for v in values)
    values[0]["list"].append(3)
    assert values[1]["list"] == [1, 2]  # events do not share mutable constants


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = generate(count=300, seed=42, template=TEMPLATE, batch_size=7).values
    b = generate(count=300, seed=42, template=TEMPLATE, batch_size=100).values
    c = generate(count=300, seed=43, template=TEMPLATE).values
    assert a == b
    assert a != c


def test_now_timestamps() -> None:
    values = generate(count=3, format="object",
                      template={"s": {"now": True}, "ms": {"now": "ms"}, "iso": {"now": "iso"}}).values
    assert all(isinstance(v["s"], float) and isinstance(v["ms"], int) and "T" in v["iso"] for v in values)


def test_json_bytes_parse_and_malformed_events_are_dead_lettered(tmp_path: Path) -> None:
    out, dlq = MemorySink(name="out"), tmp_path / "dlq.jsonl"
    src = GeneratorSource(count=100, seed=1, malformed_every=10, batch_size=30)
    r = (Pipeline("t").source(src).parse("json", on_error="dead_letter").sink(out)
         .dead_letter(FileSink(path=str(dlq), name="dlq")).run(handle_signals=False))
    assert r.exit_code == EXIT_OK and r.dead_lettered == 10
    assert [v["id"] for v in out.values] == [i for i in range(100) if (i + 1) % 10]
    dead = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert [d["source"]["offset"] for d in dead] == list(range(9, 100, 10))
    assert dead[0]["payload"] == '{"id":9'
    assert src.tracker.watermark(0) == 100


def test_malformed_events_keep_the_random_sequence() -> None:
    plain = generate(count=50, seed=5, template=TEMPLATE).values
    broken = generate(count=50, seed=5, template=TEMPLATE, malformed_every=3).values
    for i, (p, b) in enumerate(zip(plain, broken, strict=True)):
        assert b == (p[:-1] if (i + 1) % 3 == 0 else p)


class BatchSizes(MemorySink):
    """Records the size of every batch it writes."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.sizes: list[int] = []

    async def write(self, batch) -> None:
        self.sizes.append(len(batch))
        await super().write(batch)


def test_rate_paces_whole_batches() -> None:
    out = BatchSizes()
    src = GeneratorSource(count=200, rate=400, batch_size=1000)
    assert Pipeline("t").source(src).sink(out).run(handle_signals=False).exit_code == EXIT_OK
    # about ten batches a second: batches of rate/10 events, never one event at a time
    assert out.sizes == [40] * 5
    assert len(out.values) == 200


def test_key_field() -> None:
    values = generate(count=4, template={"id": {"seq": True}, "user": {"choice": ["a"]}}, key="user")
    assert {m.key for m in values.messages} == {"a"}


@pytest.mark.parametrize("template", [
    {"x": {"choise": [1, 2]}},
    {"x": {"int": [5, 1]}},
    {"x": {"int": "1..5"}},
    {"x": {"float": [1]}},
    {"x": {"normal": [0, -1]}},
    {"x": {"string": -1}},
    {"x": {"now": "century"}},
    {"x": {"choice": []}},
    {"x": {"seq": True, "int": [1, 2]}},
])
def test_bad_templates_are_config_errors(template: dict) -> None:
    with pytest.raises(ValidationError, match="'x'"):
        GeneratorSource(template=template)


def test_other_config_errors() -> None:
    with pytest.raises(ValidationError, match="malformed_every"):
        GeneratorSource(format="object", malformed_every=3)
    with pytest.raises(ValidationError, match="key"):
        GeneratorSource(key="nope")
    with pytest.raises(ValidationError):
        GeneratorSource(rate=0)
    assert {"seq", "choice", "int", "float", "normal", "uuid", "now", "string"} <= set(FIELD_KINDS)


def test_json_values_are_exact_size_bytes() -> None:
    """Events held in channels take their own size, not orjson's ~4 KiB output buffer each."""
    import tracemalloc

    src = GeneratorSource(seed=3, template={"id": {"seq": True}, "user": {"choice": ["ann", "bob"]}})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        msgs = src._messages(0, 2000)
        per_event = (tracemalloc.get_traced_memory()[0] - before) / len(msgs)
    finally:
        tracemalloc.stop()
    assert all(type(m.value) is bytes and m.raw is m.value for m in msgs)
    assert orjson.loads(msgs[5].value) == {"id": 5, "user": orjson.loads(msgs[5].value)["user"]}
    assert per_event < 1000  # Message + exact-size bytes; was ~4,200 with orjson's buffer
