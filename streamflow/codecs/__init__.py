"""Codecs (bytes <-> values) and framings (where one payload ends in a byte stream).

Importing this package registers the built-in codecs (json, text, lines, raw,
csv; avro, protobuf and json_schema, which need a schema registry and their
library's extra) and framings (newline, length_delimited, whole).
"""

from . import avro as _avro  # noqa: F401  (registers avro)
from . import csv as _csv  # noqa: F401  (registers csv)
from . import framing as _framing  # noqa: F401  (registers newline, length_delimited, whole)
from . import json_schema as _json_schema  # noqa: F401  (registers json_schema)
from . import protobuf as _protobuf  # noqa: F401  (registers protobuf)
from . import text as _text  # noqa: F401  (registers json, text, lines, raw)
from .base import Codec, CodecName, CodecOptions, get_codec
from .framing import CHUNK_SIZE, Deframer, Framing, FramingName, LineSplitter, get_framing

__all__ = ["CHUNK_SIZE", "Codec", "CodecName", "CodecOptions", "Deframer", "Framing", "FramingName",
           "LineSplitter", "get_codec", "get_framing"]
