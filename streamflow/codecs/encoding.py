"""`StreamEncoder`: batches of values -> one framed block of bytes, for stream sinks (a file, stdout)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .config import CodecConfig


class StreamEncoder:
    """Encodes each batch with the configured codec and joins it with the configured framing.

    One per sink: a codec may fix its columns from the first value it writes (csv).
    """

    def __init__(self, config: CodecConfig) -> None:
        self.codec = config.make_codec()
        self.framing = config.make_framing()

    @property
    def has_header(self) -> bool:
        """Whether a new output starts with a header (see `header`)."""
        return self.codec.header

    def encode(self, values: Sequence[Any]) -> bytes:
        """``values`` as one block of framed payloads; never fails on a value."""
        return self.framing.encode(self.codec, values)

    def header(self, first: Any) -> bytes:
        """The framed header of a new output whose first value is ``first`` (empty: none)."""
        payload = self.codec.header_for(first)
        return b"" if payload is None else self.framing.frame([payload])
