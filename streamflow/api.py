"""Everything needed to write a streamflow component, importable from one place.

A source, transform or sink is one class typed by its pydantic config model
and registered by name; a codec turns bytes into values and back; a framing
says where one payload ends in a byte stream; an aggregation folds events of
a window::

    from streamflow.api import SINKS, Batch, ComponentConfig, Sink

    class PrintConfig(ComponentConfig):
        prefix: str = ""

    @SINKS.register("print")
    class PrintSink(Sink[PrintConfig]):
        async def write(self, batch: Batch) -> None:
            for message in batch:
                print(self.config.prefix, message.value)

The README's "Writing a connector" walks through a complete one. Third-party
packages register theirs through the ``streamflow.plugins`` entry-point group;
a YAML pipeline may also name modules to import under ``plugins:``.
"""

from __future__ import annotations

from .codecs.base import Codec, CodecName, CodecOptions, get_codec
from .codecs.config import CodecConfig
from .codecs.decoding import FramedSource, FramedSourceConfig
from .codecs.encoding import StreamEncoder
from .codecs.framing import Deframer, Framing, FramingName, get_framing
from .core.acks import Ack, AckTracker
from .core.backoff import Backoff
from .core.batch import Batch
from .core.errors import ConfigError, ErrorHandler, ErrorPolicy, Handled, PipelineFailed, dead_letter_message
from .core.message import Message
from .core.refs import FunctionRef
from .core.registry import CODECS, FRAMINGS, SINKS, SOURCES, TRANSFORMS, Registry, UnknownType
from .core.stage import (
    Component,
    ComponentConfig,
    EventTransformConfig,
    Sink,
    Source,
    SourceConfig,
    StageContext,
    Transform,
    TransformConfig,
)
from .core.stats import StageStats
from .transforms.aggregations import Aggregation, aggregation
from .transforms.base import EventTransform

__all__ = [
    # component kinds and their configs
    "Component", "ComponentConfig", "Source", "SourceConfig", "Transform", "TransformConfig",
    "EventTransform", "EventTransformConfig", "Sink", "Codec", "Framing", "Deframer", "Aggregation",
    # byte streams: a source or sink that reads or writes framed payloads
    "FramedSource", "FramedSourceConfig", "CodecConfig", "StreamEncoder", "CodecOptions",
    # registries (``@SINKS.register("name")``)
    "SOURCES", "TRANSFORMS", "SINKS", "CODECS", "FRAMINGS", "Registry", "UnknownType", "aggregation",
    # what flows through a pipeline
    "Message", "Batch", "Ack", "AckTracker",
    # what a component gets when it opens, and how it handles failures
    "StageContext", "StageStats", "ErrorPolicy", "ErrorHandler", "Handled", "Backoff",
    "dead_letter_message", "PipelineFailed", "ConfigError",
    # config field types
    "FunctionRef", "CodecName", "FramingName", "get_codec", "get_framing",
]
