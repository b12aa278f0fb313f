"""The component shape: a config declared once (typed), `concurrency` honoured or rejected, abstract methods."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from streamflow import Batch, Pipeline
from streamflow.config import InvalidConfig, load_yaml
from streamflow.connectors.memory import MemorySink, MemorySource
from streamflow.core.registry import SINKS, SOURCES, TRANSFORMS
from streamflow.core.runner import EXIT_OK
from streamflow.core.stage import ComponentConfig, Sink, Source, Transform, TransformConfig


class TagConfig(ComponentConfig):
    tag: str = Field("x", description="appended to every value")


class TagSink(Sink[TagConfig]):
    """Declares its config in its base class only."""

    def setup(self) -> None:
        self.seen: list[str] = []

    async def write(self, batch: Batch) -> None:
        self.seen += [f"{m.value}{self.config.tag}" for m in batch]


def test_config_comes_from_the_generic_base_and_setup_runs_once() -> None:
    assert TagSink.Config is TagConfig
    sink = TagSink(tag="!")
    assert isinstance(sink.config, TagConfig) and sink.config.tag == "!" and sink.seen == []
    merged = TagSink(TagConfig(tag="?", name="t"), tag="+")  # options override the config object
    assert merged.config.tag == "+" and merged.name == "t"


def test_options_are_validated_like_yaml() -> None:
    with pytest.raises(ValueError, match="tagg"):
        TagSink(tagg="!")
    with pytest.raises(ValueError, match="tag"):
        TagSink(TagConfig(), tag=3)


def test_a_component_missing_its_abstract_method_cannot_be_built() -> None:
    class NoWrite(Sink[TagConfig]):
        pass

    class NoRead(Source[ComponentConfig]):
        pass

    class NoProcess(Transform[TransformConfig]):
        pass

    for cls in (NoWrite, NoRead, NoProcess):
        with pytest.raises(TypeError, match="abstract"):
            cls()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.mark.parametrize("stage", [
    "{type: dedupe, key: id, concurrency: 4}",
    "{type: parse, concurrency: 2}",
    "{type: rate_limit, rate: 10, concurrency: 2}",
    "{type: window, size: 1, aggregate: {n: count}, concurrency: 3}",
    "{type: drop, fields: [a], concurrency: 2}",
])
def test_serial_transforms_reject_concurrency_as_a_config_error(tmp_path: Path, stage: str) -> None:
    cfg = write(tmp_path, f"""
        name: p
        source: {{type: memory}}
        stages:
          - {stage}
        sink: {{type: memory}}
        """)
    with pytest.raises(InvalidConfig) as info:
        load_yaml(cfg)
    assert f"{cfg}:4:5: stages[0] — " in str(info.value)
    assert "does not support `concurrency` above 1" in str(info.value)


def test_sync_function_with_concurrency_is_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match="make it `async def`"):
        Pipeline("p").map(lambda v: v, concurrency=4)


def test_async_map_really_runs_concurrency_calls_at_once() -> None:
    """`concurrency: 4` keeps exactly 4 calls in flight, never more, and the graph says so."""
    running = peak = 0

    async def slow(value: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1
        return value

    out = MemorySink()
    p = Pipeline("p").source(MemorySource(values=list(range(200)), batch_size=10)).map(slow, concurrency=4)
    p.sink(out)
    assert p.transforms[0].concurrency == 4 and "×4" in p.graph()
    result = p.run(handle_signals=False)
    assert result.exit_code == EXIT_OK
    assert out.values == list(range(200))
    assert peak == 4


def test_registries_are_typed_by_kind() -> None:
    assert issubclass(SOURCES.get("memory"), Source)
    assert issubclass(SINKS.get("memory"), Sink)
    assert issubclass(TRANSFORMS.get("dedupe"), Transform)


def test_rate_limit_capacity_is_still_the_engine_method() -> None:
    stage: Any = TRANSFORMS.get("rate_limit")(rate=5)
    assert callable(stage.capacity) and stage.bucket_size == 5.0
