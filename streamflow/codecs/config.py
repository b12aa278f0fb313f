"""The config keys of components that read or write a framed byte stream: ``codec`` and ``framing``.

``format:`` (``jsonl``, ``lines``, ``raw``, ``csv``) was the name these
components used before codecs and framings were one vocabulary. It is kept
as a deprecated alias: it is translated to its ``codec`` (the default
``framing: newline`` is what every format meant) and a warning names the
key to write instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import Codec, CodecName, CodecOptions, get_codec
from .framing import Framing, FramingName, get_framing

log = logging.getLogger("streamflow.config")

#: The deprecated ``format:`` values and the codec each one means (with ``framing: newline``).
FORMAT_CODECS = {"jsonl": "json", "lines": "text", "raw": "raw", "csv": "csv"}


def translate_format(data: Any, formats: Mapping[str, Mapping[str, str]], default_note: str = "") -> Any:
    """``data`` with a deprecated ``format:`` replaced by the keys it means, and a warning saying so.

    ``formats`` maps each old value to the new keys (``{"jsonl": {"codec": "json"}}``); a value
    not in it, or ``format`` given with one of the new keys, is a config error (ValueError).
    """
    if not isinstance(data, dict) or "format" not in data:
        return data
    data = dict(data)
    fmt = data.pop("format")
    keys = sorted({key for mapping in formats.values() for key in mapping})
    if any(key in data for key in keys):
        raise ValueError(f"`format` is the deprecated name of {' + '.join(f'`{k}`' for k in keys)}; "
                         f"give only {'those' if len(keys) > 1 else f'`{keys[0]}`'}")
    meaning = formats.get(fmt) if isinstance(fmt, str) else None
    if meaning is None:
        choices = "; ".join(", ".join(f"{k}: {v}" for k, v in m.items()) for m in formats.values())
        raise ValueError(f"unknown format {fmt!r}; `format` is deprecated: write `{keys[0]}:` … ({choices})")
    written = " and ".join(f"`{k}: {v}`" for k, v in meaning.items())
    log.warning("`format: %s` is deprecated; write %s instead%s", fmt, written, default_note)
    return {**data, **meaning}


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
        return translate_format(data, {fmt: {"codec": codec} for fmt, codec in FORMAT_CODECS.items()},
                                " (with the default `framing: newline`)")

    def make_codec(self) -> Codec:
        """The configured codec, with its options."""
        return get_codec(self.codec, CodecOptions(self.fields, self.csv_header))

    def make_framing(self) -> Framing:
        """The configured framing."""
        return get_framing(self.framing)
