"""`streamflow produce`: send lines (stdin or a file) or generated events to a Kafka topic.

A produce is a pipeline: the ``stdin``, ``file`` or ``generator`` source
into the ``kafka`` sink (``acks: all``, idempotent). Lines are sent as they
are (``codec: raw``) unless ``codec`` says how to parse them (``json`` lets
``key_field`` pick the key); generated events use the generator source's
template (a YAML or JSON file, or inline JSON) and are sent as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..core.errors import ConfigError
from ..core.pipeline import Pipeline
from ..core.result import RunResult

__all__ = ["Produce", "read_template"]


def read_template(spec: str) -> dict[str, Any]:
    """A generator template from a YAML/JSON file (``path``) or inline (``{"id": {"seq": true}}``)."""
    path = Path(spec)
    text = spec if spec.lstrip().startswith("{") else None
    if text is None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"template {spec}: cannot read it ({exc.strerror})") from None
    try:
        template = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise ConfigError(f"template {spec}: not YAML or JSON: {exc}") from None
    if isinstance(template, dict) and isinstance(template.get("template"), dict):
        template = template["template"]  # a file holding `template: {...}` (the YAML source's key)
    if not isinstance(template, dict):
        raise ConfigError(f"template {spec}: expected a mapping of field -> generator, "
                          f"got {type(template).__name__}")
    return template


@dataclass
class Produce:
    """Where events come from (``file``, stdin, or a ``template``) and the topic they go to."""

    topic: str
    bootstrap: str = "127.0.0.1:9092"
    file: str | None = None
    codec: str = "raw"
    key_field: str | None = None
    template: str | None = None
    count: int = 10
    rate: float | None = None
    seed: int | None = None
    key: str | None = None

    def pipeline(self) -> Pipeline:
        """The produce as a pipeline (config errors raise `ConfigError` before anything connects)."""
        p = Pipeline("produce")
        if self.template is not None:
            p.source("generator", template=read_template(self.template), count=self.count, rate=self.rate,
                     seed=self.seed, key=self.key, format="object")
        elif self.file is not None:
            p.source("file", path=self.file, codec=self.codec)
        else:
            p.source("stdin", codec=self.codec)
        p.sink("kafka", name="kafka", bootstrap_servers=self.bootstrap, topic=self.topic,
               key_field=self.key_field, codec="json" if self.template else self.codec, connect_timeout=10.0)
        return p

    def run(self) -> RunResult:
        """Send everything, wait for the broker's acks; the result says how many went out."""
        return self.pipeline().validate().run()
