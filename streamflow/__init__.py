"""streamflow: async streaming pipelines for Kafka, files, stdin and HTTP, in Python.

    from streamflow import Pipeline
    Pipeline("demo").source("generator", count=1000).map(fn).sink("stdout").run()
"""

from .core import (
    Batch,
    ConfigError,
    ErrorPolicy,
    Message,
    Pipeline,
    PipelineFailed,
    Runner,
    RunResult,
    Sink,
    Source,
    Transform,
)
from .loading import load

__version__ = "0.1.0"

__all__ = [
    "Batch", "ConfigError", "ErrorPolicy", "Message", "Pipeline", "PipelineFailed", "RunResult",
    "Runner", "Sink", "Source", "Transform", "__version__", "load",
]
