"""The Confluent wire format: a zero magic byte, the schema id (4 bytes, big-endian), the body.

Protobuf payloads carry one more thing between the id and the body: the
path of the message type in its .proto file, as a count and indexes in
zigzag varints — just ``0`` for the file's first message.
"""

from __future__ import annotations

import struct

MAGIC = 0
HEADER = struct.Struct(">bI")


class WireFormatError(ValueError):
    """A payload that is not in the Confluent wire format."""


def split(data: bytes) -> tuple[int, memoryview]:
    """The schema id of ``data`` and its body."""
    if len(data) < HEADER.size:
        raise WireFormatError(f"payload of {len(data)} bytes is too short for the schema-registry wire "
                              f"format (magic byte + 4-byte schema id)")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError(f"payload starts with byte {data[0]}, not the schema-registry magic byte 0")
    return schema_id, memoryview(data)[HEADER.size:]


def schema_id_of(data: bytes) -> int | None:
    """The schema id of a well-formed payload, else None (no error: for prefetching)."""
    if len(data) < HEADER.size or data[0] != MAGIC:
        return None
    return int.from_bytes(data[1:5], "big")


def header(schema_id: int) -> bytes:
    """The 5 bytes that start every payload written with ``schema_id``."""
    return HEADER.pack(MAGIC, schema_id)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def write_varint(value: int, out: bytearray) -> None:
    """Append ``value`` (signed, zigzag-encoded) as a protobuf varint."""
    n = _zigzag(value)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def read_varint(body: memoryview, pos: int) -> tuple[int, int]:
    """The signed (zigzag) varint at ``pos`` and the position after it."""
    shift = result = 0
    while True:
        if pos >= len(body):
            raise WireFormatError("protobuf message indexes end inside a varint")
        byte = body[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return _unzigzag(result), pos
        shift += 7
        if shift > 63:
            raise WireFormatError("protobuf message index varint is too long")


def message_indexes(indexes: list[int]) -> bytes:
    """The encoded message-index path (``[0]`` is written as the single byte 0)."""
    if indexes == [0]:
        return b"\x00"
    out = bytearray()
    write_varint(len(indexes), out)
    for i in indexes:
        write_varint(i, out)
    return bytes(out)


def split_indexes(body: memoryview) -> tuple[list[int], memoryview]:
    """The message-index path at the start of a protobuf body, and the message bytes after it."""
    count, pos = read_varint(body, 0)
    if count < 0 or count > 100:
        raise WireFormatError(f"implausible protobuf message index count {count}")
    if count == 0:
        return [0], body[pos:]
    indexes = []
    for _ in range(count):
        index, pos = read_varint(body, pos)
        indexes.append(index)
    return indexes, body[pos:]
