"""Request bodies of the HTTP source: the Content-Type picks the framing, JSON decodes each event.

``application/json`` is one frame (``whole``) holding one event or a JSON
array of events; ``application/x-ndjson`` (and the other JSON-lines types,
``text/plain``) is ``newline``-framed, one event per non-blank line. A body is
accepted or rejected whole: nothing of a rejected body is ingested.
"""

from __future__ import annotations

from typing import Any

from ...codecs import get_framing
from ...codecs.text import JsonCodec
from .config import NonObject

#: Content types read as one JSON document (an event, or an array of events).
JSON_TYPES = frozenset({"application/json"})
#: Content types read as JSON lines (one event per non-blank line).
LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/json-lines",
                         "application/jsonlines", "text/plain"})
#: Every content type the source reads.
ACCEPTED_TYPES = JSON_TYPES | LINES_TYPES
#: Decodes each frame of a body.
_JSON = JsonCodec()


class BadBody(ValueError):
    """The request body is not what its Content-Type says (answered 400)."""

    status = 400


class UnsupportedType(BadBody):
    """The request's Content-Type is not one the source reads (answered 415)."""

    status = 415


class NotAnObject(BadBody):
    """An event is not a JSON object and ``non_object`` is ``reject`` (answered 422)."""

    status = 422


def check_content_type(content_type: str) -> None:
    """Raise `UnsupportedType` unless the source reads ``content_type``."""
    if content_type not in ACCEPTED_TYPES:
        raise UnsupportedType(f"unsupported Content-Type {content_type!r}; expected one of: "
                              f"{', '.join(sorted(ACCEPTED_TYPES))}")


def parse_body(body: bytes, content_type: str,
               non_object: NonObject = "accept") -> tuple[list[Any], list[bytes] | None]:
    """The events of a request body and, for JSON lines, each event's raw line.

    ``non_object`` says what becomes of an event that is not a JSON object:
    ``reject`` raises `NotAnObject`, ``wrap`` makes it ``{"value": event}``,
    ``accept`` keeps it. Raises `BadBody` (or a subclass) naming the first problem.
    """
    check_content_type(content_type)
    raws: list[bytes] | None = None
    if content_type in JSON_TYPES:
        try:
            doc = _JSON.decode(body)
        except ValueError as exc:
            raise BadBody(f"invalid JSON: {exc}") from None
        values = doc if isinstance(doc, list) else [doc]
    else:
        values, raws = _lines(body)
    if non_object != "accept":
        values = _objects(values, non_object)
    return values, raws


def _lines(body: bytes) -> tuple[list[Any], list[bytes]]:
    values: list[Any] = []
    raws: list[bytes] = []
    for number, line in enumerate(_frames(body, "newline"), 1):
        if not line.strip():
            continue
        try:
            values.append(_JSON.decode(line))
        except ValueError as exc:
            raise BadBody(f"invalid JSON on line {number}: {exc}") from None
        raws.append(line)
    return values, raws


def _objects(values: list[Any], rule: NonObject) -> list[Any]:
    """``values`` under the non-object ``rule`` (``reject`` or ``wrap``)."""
    if all(type(v) is dict for v in values):
        return values
    if rule == "wrap":
        return [v if isinstance(v, dict) else {"value": v} for v in values]
    i, v = next((i, v) for i, v in enumerate(values) if not isinstance(v, dict))
    what = "null" if v is None else type(v).__name__
    raise NotAnObject(f"event {i + 1} is {what}, not a JSON object (non_object: reject)")


def _frames(body: bytes, framing: str) -> list[bytes]:
    """The frames of a whole body in ``framing`` (its last frame needs no delimiter)."""
    deframer = get_framing(framing).deframer()
    frames = deframer.feed(body)
    if (rest := deframer.rest()) is not None:
        frames.append(rest)
    return [f[:-1] if f.endswith(b"\r") else f for f in frames] if deframer.saw_cr else frames
