"""YAML pipeline files: schema, loader, ``${VAR}`` interpolation, ``--set`` overrides, error reporting.

    from streamflow.config import load_yaml
    pipeline = load_yaml("pipeline.yaml", overrides=["source.count=10"])
"""

from .document import Document, format_path
from .errors import InvalidConfig, Issue
from .interpolate import InterpolationError, interpolate
from .loader import build, load_yaml, loads_yaml
from .overrides import apply_overrides
from .schema import PipelineFile

__all__ = [
    "Document", "InterpolationError", "InvalidConfig", "Issue", "PipelineFile", "apply_overrides", "build",
    "format_path", "interpolate", "load_yaml", "loads_yaml",
]
