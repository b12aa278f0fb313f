"""The config keys of components that read or write a framed byte stream: ``codec`` and ``framing``.

``format:`` (``jsonl``, ``lines``, ``raw``, ``csv``) was the name these
components used before codecs and framings were one vocabulary. It is kept
as a deprecated alias: it is translated to its ``codec`` (the default
``framing: newline`` is what every format meant) and a warning names the
key to write instead.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import Codec, CodecName, CodecOptions, get_codec
from .framing import Framing, FramingName, get_framing

log = logging.getLogger("streamflow.config")

#: The deprecated ``format:`` values and the codec each one means (with ``framing: newline``).
FORMAT_CODECS = {"jsonl": "json", "lines": "text", "raw": "raw", "csv": "csv"}


class CodecConfig(BaseModel):
    """Keys of a stream source or sink (file, stdin, stdout): how bytes split into frames and decode."""

    model_config = ConfigDict(extra="forbid")

    codec: CodecName = Field(
        "json", description="how a frame decodes or a value encodes: json (orjson), text (UTF-8), raw "
                            "(bytes), csv (see Codecs); replaces `format`, which still works but is deprecated")
    framing: FramingName = Field(
        "newline", description="where one frame ends: newline (one per line), length_delimited or whole "
                               "(see Framings)")
    fields: list[str] | None = Field(
        None, description="csv: column names, in order (default: the header's when reading, the keys of the "
                          "first record when writing)")
    csv_header: bool = Field(
        True, description="csv: the input starts with a header line naming the columns; a new output "
                          "starts with one")

    @model_validator(mode="before")
    @classmethod
    def _format_alias(cls, data: Any) -> Any:
        """Translate the deprecated ``format:`` key into ``codec:`` (a warning says what to write)."""
        if not isinstance(data, dict) or "format" not in data:
            return data
        data = dict(data)
        fmt = data.pop("format")
        if "codec" in data:
            raise ValueError("`format` is the deprecated name of `codec`; give only `codec`")
        codec = FORMAT_CODECS.get(fmt) if isinstance(fmt, str) else None
        if codec is None:
            raise ValueError(f"unknown format {fmt!r}; `format` is deprecated: write `codec:` "
                             f"({', '.join(sorted(set(FORMAT_CODECS.values())))})")
        log.warning("`format: %s` is deprecated; write `codec: %s` instead (with the default "
                    "`framing: newline`)", fmt, codec)
        data["codec"] = codec
        return data

    def make_codec(self) -> Codec:
        """The configured codec, with its options."""
        return get_codec(self.codec, CodecOptions(self.fields, self.csv_header))

    def make_framing(self) -> Framing:
        """The configured framing."""
        return get_framing(self.framing)
