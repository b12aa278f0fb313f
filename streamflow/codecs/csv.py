"""csv codec: one CSV record per payload (a line without its newline)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.registry import CODECS
from .base import Codec, CodecOptions


@CODECS.register("csv")
class CsvCodec(Codec):
    """One CSV record <-> a list of strings, or a dict when the columns are named (``fields`` or a header).

    In a stream with ``csv_header`` the first non-blank line of each input
    names the columns (``fields``, when given, overrides the names) and each
    new output starts with a header line; blank lines are skipped. Encoding
    takes a list/tuple (cells in order) or a mapping (cells in column order:
    ``fields``, else the keys of the first mapping written); ``None`` becomes
    an empty cell.
    """

    skip_blank = True
    batch_safe = False  # blank lines and the header are handled frame by frame

    def __init__(self, fields: Sequence[str] | None = None, delimiter: str = ",", header: bool = False) -> None:
        self.fields = list(fields) if fields is not None else None
        self.delimiter = delimiter
        self.header = header
        self._named = fields is not None

    @classmethod
    def configured(cls, options: CodecOptions) -> Codec:
        return cls(options.fields, header=options.header)

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

    def read_header(self, frame: bytes) -> None:
        """Take the column names from a header line (unless ``fields`` name them)."""
        if not self._named:
            self.fields = CsvCodec(delimiter=self.delimiter).decode(frame.rstrip(b"\r"))

    def header_for(self, first: Any) -> bytes | None:
        columns = self._columns(first)
        if not self.header or columns is None:
            return None
        return self._rows([columns], "")

    def encode(self, value: Any) -> bytes:
        return self._rows([value], "")

    def encode_many(self, values: Sequence[Any]) -> list[bytes]:
        if values:
            self._columns(values[0])
        return [self._rows([v], "") for v in values]

    def encode_delimited(self, values: Sequence[Any], delimiter: bytes) -> bytes:
        if values:
            self._columns(values[0])
        return self._rows(values, delimiter.decode())

    def _columns(self, first: Any) -> list[str] | None:
        """The columns of a stream: ``fields``, else fixed by the first mapping written."""
        if self.fields is None and isinstance(first, Mapping):
            self.fields = [str(k) for k in first]
        return self.fields

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

    def _rows(self, values: Sequence[Any], terminator: str) -> bytes:
        """Records, each followed by ``terminator``, as one bytes object."""
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=self.delimiter, lineterminator=terminator or "\n")
        writer.writerows(self.row(v) for v in values)
        text = buf.getvalue()
        return (text if terminator else text[:-1]).encode("utf-8")
