"""The engine: messages, batches, channels, acks, stage protocols, the pipeline graph, the runner.

Nothing here imports a connector; connectors and transforms register
themselves in `streamflow.core.registry`.
"""

from .acks import Ack, AckTracker
from .batch import Batch
from .channel import Channel
from .errors import ConfigError, ErrorPolicy, PipelineFailed
from .message import Message
from .pipeline import Pipeline, PipelineSettings
from .runner import Runner, RunResult, run_pipeline
from .stage import Component, Sink, Source, SourceConfig, StageContext, Transform, TransformConfig

__all__ = [
    "Ack", "AckTracker", "Batch", "Channel", "Component", "ConfigError", "ErrorPolicy", "Message",
    "Pipeline", "PipelineFailed", "PipelineSettings", "RunResult", "Runner", "Sink", "Source",
    "SourceConfig", "StageContext", "Transform", "TransformConfig", "run_pipeline",
]
