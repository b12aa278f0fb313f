"""The `Codec` protocol."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator

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


def _registered(name: str) -> str:
    try:
        CODECS.get(name)
    except KeyError as exc:
        raise ValueError(str(exc)) from None
    return name


CodecName = Annotated[str, AfterValidator(_registered)]
"""A config field naming a registered codec; unknown names are config errors listing the known ones."""
