"""The `Codec` protocol."""

from __future__ import annotations

from typing import Any, ClassVar

from ..core.registry import CODECS


class Codec:
    """Turns one payload's bytes into a value and back. Stateless and cheap to share."""

    type_name: ClassVar[str] = "codec"

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError


def get_codec(name: str) -> Codec:
    """An instance of the codec registered as ``name``."""
    return CODECS.get(name)()
