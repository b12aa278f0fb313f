"""csv codec: one CSV record per payload (a line without its newline)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.registry import CODECS
from .base import Codec


@CODECS.register("csv")
class CsvCodec(Codec):
    """One CSV line <-> a list of strings (or a dict when ``fields`` names the columns).

    Encoding takes a list/tuple (cells in order) or a mapping (cells in
    ``fields`` order when given, else in the mapping's own order); ``None``
    becomes an empty cell. The encoded line has no trailing newline.
    """

    def __init__(self, fields: Sequence[str] | None = None, delimiter: str = ",") -> None:
        self.fields = list(fields) if fields is not None else None
        self.delimiter = delimiter

    def decode(self, data: bytes) -> Any:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else str(data)
        rows = list(csv.reader([text], delimiter=self.delimiter, strict=True))
        if len(rows) != 1:
            raise ValueError(f"expected one CSV record, got {len(rows)}")
        row = rows[0]
        if self.fields is None:
            return row
        if len(row) != len(self.fields):
            raise ValueError(f"expected {len(self.fields)} CSV fields, got {len(row)}")
        return dict(zip(self.fields, row, strict=True))

    def encode(self, value: Any) -> bytes:
        return self.encode_many([value])[:-1]

    def row(self, value: Any) -> list[Any]:
        """The cells of ``value`` in column order."""
        if isinstance(value, Mapping):
            keys = self.fields if self.fields is not None else list(value)
            return ["" if (v := value.get(k)) is None else v for k in keys]
        if isinstance(value, (list, tuple)):
            return ["" if v is None else v for v in value]
        if isinstance(value, bytes):
            return [value.decode("utf-8", "replace")]
        return [value]

    def encode_many(self, values: Sequence[Any]) -> bytes:
        """Several records, each ending with a newline, as one bytes object."""
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=self.delimiter, lineterminator="\n")
        writer.writerows(self.row(v) for v in values)
        return buf.getvalue().encode("utf-8")
