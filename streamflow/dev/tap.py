"""`streamflow tap`: print the events of a Kafka topic (or a file) with where they came from, like kcat.

A tap is a pipeline: the ``kafka`` (or ``file``) source, reading raw bytes,
into a `TapSink` that decodes each value with a codec and prints one line
per event. It stops after ``count`` events, at the end of the topic (or
file), or with ``follow`` only on Ctrl-C/SIGTERM. It reads as a consumer
group of its own (``streamflow-tap-<random>``), so it never takes
partitions away from a running pipeline.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from pydantic import Field

from ..codecs.base import CodecName, get_codec
from ..connectors.kafka.source import KafkaSource
from ..core.batch import Batch
from ..core.message import Message
from ..core.pipeline import Pipeline
from ..core.result import RunResult
from ..core.runner import Runner
from ..core.stage import ComponentConfig, Sink

__all__ = ["Tap", "TapSink", "format_line", "format_json"]


class TapSinkConfig(ComponentConfig):
    """Keys of the tap's printing sink."""

    codec: CodecName = Field("json", description="how each value is decoded for printing")
    count: int | None = Field(None, ge=1, description="print this many events, then stop")
    json_lines: bool = Field(False, description="one JSON object per event instead of a line for people")


class TapSink(Sink[TapSinkConfig]):
    """Prints each event's position, key, headers and decoded value; sets `done` after ``count``."""

    def setup(self) -> None:
        self._codec = get_codec(self.config.codec)
        self.printed = 0
        self.done = asyncio.Event()
        self.out: TextIO = sys.stdout

    async def write(self, batch: Batch) -> None:
        count = self.config.count
        messages = batch.messages if count is None else batch.messages[:count - self.printed]
        fmt = format_json if self.config.json_lines else format_line
        lines = [fmt(m, self._decode(m.value)) for m in messages]
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
        self.printed += len(lines)
        if count is not None and self.printed >= count:
            self.done.set()

    def _decode(self, value: Any) -> Any:
        """The value decoded by the codec; undecodable bytes as text, marked."""
        if not isinstance(value, bytes):
            return value
        try:
            return self._codec.decode(value)
        except Exception as exc:  # noqa: BLE001 - shown, not fatal: a tap is for looking at bad data too
            return f"<not {self.config.codec}: {exc}> {value.decode(errors='replace')}"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return orjson.dumps(value, default=str).decode()


def format_line(m: Message, value: Any) -> str:
    """``topic[partition]@offset  key=K  headers=a=1,b=2  VALUE`` (key and headers only when present)."""
    where = f"{m.topic}[{m.partition}]@{m.offset}" if m.partition is not None else f"{m.topic}@{m.offset}"
    parts = [where]
    if m.key is not None:
        parts.append(f"key={_text(m.key)}")
    if m.headers:
        parts.append("headers=" + ",".join(f"{k}={_text(v)}" for k, v in m.headers))
    parts.append(_text(value))
    return "  ".join(parts)


def format_json(m: Message, value: Any) -> str:
    """One JSON object: topic, partition, offset, key, headers (text) and the decoded value."""
    record = {"topic": m.topic, "partition": m.partition, "offset": m.offset,
              "key": None if m.key is None else _text(m.key),
              "headers": {k: _text(v) for k, v in m.headers or ()}, "value": value}
    return orjson.dumps(record, default=str).decode()


@dataclass
class Tap:
    """What to read and when to stop: a topic (or ``file``), ``from_beginning``, ``count``, ``follow``."""

    topic: str | None = None
    file: str | None = None
    bootstrap: str = "127.0.0.1:9092"
    codec: str = "json"
    from_beginning: bool = False
    count: int | None = None
    follow: bool = False
    json_lines: bool = False
    group: str | None = None

    def pipeline(self) -> tuple[Pipeline, TapSink]:
        """The tap as a pipeline, and its sink (which knows how much was printed)."""
        sink = TapSink(name="tap", codec=self.codec, count=self.count, json_lines=self.json_lines)
        p = Pipeline("tap", commit_interval=5.0)
        if self.file is not None:
            p.source("file", name="file", path=self.file, codec="raw",
                     mode="follow" if self.follow else "read")
        else:
            p.source("kafka", name="kafka", bootstrap_servers=self.bootstrap, topics=[self.topic],
                     group_id=self.group or f"streamflow-tap-{uuid.uuid4().hex[:12]}", codec="raw",
                     auto_offset_reset="earliest" if self.from_beginning else "latest",
                     connect_timeout=10.0, metadata_max_age_ms=1000)  # a topic created later shows up
        return p.sink(sink), sink

    def run(self) -> RunResult:
        """Print events until ``count``, the end (unless ``follow``), or a signal."""
        pipeline, sink = self.pipeline()
        return pipeline.run(watchers=[lambda runner: self._stop_when_done(runner, sink)])

    async def _stop_when_done(self, runner: Runner, sink: TapSink) -> None:
        """Stop the run once ``count`` events were printed or (without ``follow``/``count``) the
        topic was read to its end."""
        at_end = self.file is None and self.count is None and not self.follow
        while True:
            try:
                await asyncio.wait_for(sink.done.wait(), 0.2)
                break
            except TimeoutError:
                if at_end and runner.state == "running" and await _caught_up(runner):
                    break
        runner.stop()


async def _caught_up(runner: Runner) -> bool:
    for source in runner.pipeline.sources:
        if isinstance(source, KafkaSource) and not await source.caught_up():
            return False
    return True
