"""A per-event transform: masks fields of each event, keeping their last characters."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from streamflow.api import TRANSFORMS, EventTransform, EventTransformConfig, Message


class MaskConfig(EventTransformConfig):
    fields: list[str] = Field(description="top-level fields to mask")
    keep: int = Field(4, ge=0, strict=True, description="characters left visible at the end")


@TRANSFORMS.register("mask")
class Mask(EventTransform[MaskConfig]):
    """Replaces all but the last ``keep`` characters of each field with ``*``.

    An event that is not a mapping goes to the stage's ``on_error`` policy.
    """

    def call(self, msg: Message) -> Any:
        value = msg.value
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping event, got {type(value).__name__}")
        keep = self.config.keep
        for field in self.config.fields:
            if field in value:
                text = str(value[field])
                value[field] = "*" * max(0, len(text) - keep) + (text[-keep:] if keep else "")
        return value

    def emit(self, msg: Message, result: Any, out: list[Message]) -> None:
        msg.value = result
        out.append(msg)
