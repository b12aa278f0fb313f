"""The `Codec` base: one payload's bytes <-> one value, plus the batch forms stream sinks use."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator

from ..core.registry import CODECS, Lookup


@dataclass(frozen=True)
class CodecOptions:
    """Options a codec may take from its component's config; codecs without options ignore them."""

    #: Column names (csv).
    fields: Sequence[str] | None = None
    #: The stream starts with a header line: read it (sources) or write one (sinks) (csv).
    header: bool = False


class Codec(ABC):
    """Turns one payload (a frame) into a value and back.

    ``decode`` and ``encode`` work on one payload and raise on what they
    cannot handle (the Kafka connectors and the ``parse`` stage use them).
    The batch forms serve stream sinks and sources, where a framing
    (`streamflow.codecs.framing`) joins or splits the payloads: they exist so
    a codec can work on a whole batch at once (one list comprehension, one C
    call) instead of a Python call per event. The encoding batch forms never
    fail on a value: bytes are written as they are, and anything else a
    codec cannot encode is written as text.
    """

    type_name: ClassVar[str] = "codec"
    #: The registry kind (`CODECS`): a ``module:Class`` codec name must be one.
    kind: ClassVar[str] = "codec"
    #: In a delimited stream a blank frame is no event (skipped, but it counts for line numbers).
    skip_blank: ClassVar[bool] = False
    #: `decode_many` may decode a whole batch in one pass (``decode`` is pure; a failure raises).
    batch_safe: ClassVar[bool] = True
    #: The stream starts with a header frame (read with `read_header`, written from `header_for`).
    header: bool = False

    @classmethod
    def configured(cls, options: CodecOptions) -> Codec:
        """An instance for a component's config (codecs with options override this)."""
        return cls()

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """The value of one payload; raises when the payload is not valid for this codec."""

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        """One payload for ``value``."""

    def decode_many(self, frames: list[bytes]) -> list[Any]:
        """Every frame's value, in order; raises if any frame fails (then decode them one by one)."""
        decode = self.decode
        return [decode(frame) for frame in frames]

    def encode_many(self, values: Sequence[Any]) -> list[bytes]:
        """One payload per value (never fails on a value; see the class docstring)."""
        encode = self.encode
        return [encode(v) for v in values]

    def encode_delimited(self, values: Sequence[Any], delimiter: bytes) -> bytes:
        """The payloads of ``values``, each followed by ``delimiter``, as one bytes object."""
        return b"".join([p + delimiter for p in self.encode_many(values)])

    def read_header(self, frame: bytes) -> None:
        """Take the stream's header frame (codecs with a `header` override this)."""
        return None

    def header_for(self, first: Any) -> bytes | None:
        """The header payload of a new output whose first value is ``first`` (None: no header)."""
        return None


def get_codec(name: str, options: CodecOptions | None = None) -> Codec:
    """An instance of the codec registered as ``name`` (configured with ``options`` when given)."""
    cls = CODECS.get(name)
    return cls() if options is None else cls.configured(options)


def registered_in(registry: Lookup[type]) -> AfterValidator:
    """A validator of a config field naming a type of ``registry``: unknown names list the known ones."""
    def check(name: str) -> str:
        try:
            registry.get(name)
        except KeyError as exc:
            raise ValueError(str(exc)) from None
        return name
    return AfterValidator(check)


CodecName = Annotated[str, registered_in(CODECS)]
"""A config field naming a registered codec; unknown names are config errors listing the known ones."""
