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


class ParseConfig(EventTransformConfig):
    codec: CodecName = Field("json", description="codec that decodes the payload (json, text, raw, csv …; see Codecs)")


@TRANSFORMS.register("parse")
class Parse(EventTransform[ParseConfig]):
    """Decode each event's bytes into a value; keeps the bytes in ``Message.raw``."""

    def setup(self) -> None:
        self.codec = get_codec(self.config.codec)

    def call(self, msg: Message) -> Any:
        data = msg.value
        if isinstance(data, str):
            data = data.encode()
        return self.codec.decode(data)

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        if msg.raw is None and isinstance(msg.value, (bytes, str)):
            msg.raw = msg.value if isinstance(msg.value, bytes) else msg.value.encode()
        msg.value = result
        out.append(msg)

    def fast(self, batch: Batch) -> Batch:
        decode = self.codec.decode
        msgs = batch.messages
        values = [decode(m.value) for m in msgs]
        for m, v in zip(msgs, values, strict=False):
            if m.raw is None:
                m.raw = m.value
            m.value = v
        return batch
