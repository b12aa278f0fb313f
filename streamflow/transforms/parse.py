"""parse: decode raw payloads with a codec; undecodable events go to the error policy."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..codecs import CodecName, get_codec
from ..core.batch import Batch
from ..core.message import Message
from ..core.registry import TRANSFORMS
from ..core.stage import EventTransformConfig
from .base import EventTransform

#: What `Parse.call` returns for a blank payload of a codec that skips blanks: no event.
_BLANK = object()


class ParseConfig(EventTransformConfig):
    codec: CodecName = Field("json", description="codec that decodes the payload (json, text, raw, csv …; see Codecs)")


@TRANSFORMS.register("parse")
class Parse(EventTransform[ParseConfig]):
    """Decode each event's bytes into a value; keeps the bytes in ``Message.raw``.

    A blank or whitespace-only payload is no event for a codec that skips blanks (json, as a file
    source does): it is dropped and counted in ``blank`` (and ``filtered``), not sent to ``on_error``.
    """

    def setup(self) -> None:
        self.codec = get_codec(self.config.codec)

    def call(self, msg: Message) -> Any:
        data = msg.value
        if isinstance(data, str):
            data = data.encode()
        if self.codec.skip_blank and (not data or data.isspace()):
            return _BLANK
        return self.codec.decode(data)

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        if result is _BLANK:
            if self.ctx is not None:
                self.ctx.stats.blank += 1
            return
        if msg.raw is None and isinstance(msg.value, (bytes, str)):
            msg.raw = msg.value if isinstance(msg.value, bytes) else msg.value.encode()
        msg.value = result
        out.append(msg)

    def fast(self, batch: Batch) -> Batch:
        msgs, codec = batch.messages, self.codec
        if codec.batch_safe:
            values = codec.decode_many([m.value for m in msgs])
        else:
            decode = codec.decode
            values = [decode(m.value) for m in msgs]
        for m, v in zip(msgs, values, strict=False):
            if m.raw is None:
                m.raw = m.value
            m.value = v
        return batch
