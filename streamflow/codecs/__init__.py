"""Codecs: bytes <-> values. Importing this package registers the built-in ones."""

from . import text as _text  # noqa: F401  (registers json, lines, raw)
from .base import Codec, CodecName, get_codec

__all__ = ["Codec", "CodecName", "get_codec"]
from . import csv as _csv  # noqa: F401,E402  (registers csv)
