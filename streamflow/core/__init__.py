"""The engine: messages, batches, channels, acks, stage protocols, the pipeline graph, the runner.

Nothing here imports a connector; connectors and transforms register
themselves in `streamflow.core.registry`.

Importing this package binds `Pipeline.run` and `Pipeline.graph` to the
in-process engine (`LocalEngine`): `pipeline` does not import the runner or
the renderer, they import it.
"""

from .acks import Ack, AckTracker
from .batch import Batch
from .channel import Channel
from .engine import LocalEngine
from .errors import ConfigError, ErrorPolicy, PipelineFailed
from .message import Message
from .pipeline import Pipeline
from .result import EXIT_ABORTED, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, RunnerHooks, RunResult
from .runner import Runner, run_pipeline
from .settings import PipelineSettings
from .stage import Component, Sink, Source, SourceConfig, StageContext, Transform, TransformConfig

Pipeline.engine = LocalEngine()

__all__ = [
    "EXIT_ABORTED", "EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "Ack", "AckTracker", "Batch", "Channel",
    "Component", "ConfigError", "ErrorPolicy", "LocalEngine", "Message", "Pipeline", "PipelineFailed",
    "PipelineSettings", "RunResult", "Runner", "RunnerHooks", "Sink", "Source", "SourceConfig", "StageContext",
    "Transform", "TransformConfig", "run_pipeline",
]
