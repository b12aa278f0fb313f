"""`LocalEngine`: what `Pipeline.run` and `Pipeline.graph` use — the `Runner` in this process, the Mermaid renderer."""

from __future__ import annotations

from typing import Any

from .graph import mermaid
from .pipeline import Pipeline
from .result import RunResult
from .runner import run_pipeline


class LocalEngine:
    """Runs a pipeline with `run_pipeline` (a fresh event loop in this process) and draws it with `mermaid`."""

    def run(self, pipeline: Pipeline, /, **options: Any) -> RunResult:
        """`run_pipeline` with `Runner`'s keyword options."""
        return run_pipeline(pipeline, **options)

    def graph(self, pipeline: Pipeline, /) -> str:
        """`mermaid`."""
        return mermaid(pipeline)
