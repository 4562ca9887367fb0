"""Writers, one per format, all writing bytes to a sink (a file, or a buffer drained into an HTTP stream).

Each takes batches of row dicts, so memory stays bounded by the batch size whatever the export size.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

# Cells a spreadsheet would evaluate as a formula (CSV injection); they get a leading apostrophe.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class Sink(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class Writer(Protocol):
    rows: int

    def write_rows(self, batch: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class ChunkSink:
    """An in-memory, append-only sink whose bytes are taken out after each batch (for streaming responses)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


class JsonlWriter:
    """One JSON object per line, UTF-8."""

    def __init__(self, sink: Sink, schema: pa.Schema) -> None:
        self.sink = sink
        self.rows = 0
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def write_rows(self, batch: list[dict[str, Any]]) -> None:
        if batch:
            dumps = self._dumps
            self.sink.write(("\n".join([dumps(row) for row in batch]) + "\n").encode())
            self.rows += len(batch)

    def close(self) -> None:
        return None


def neutralise(cell: str) -> str:
    """A CSV cell that no spreadsheet will run as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


class CsvWriter:
    """RFC 4180 CSV with a header (also for zero rows); nested values JSON-encoded; formula cells neutralised."""

    def __init__(self, sink: Sink, schema: pa.Schema) -> None:
        self.sink = sink
        self.rows = 0
        self.columns = schema.names
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")
        self._csv.writerow(self.columns)
        self._flush()

    def _cell(self, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, str):
            return neutralise(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | dict):
            return neutralise(json.dumps(value, ensure_ascii=False))
        return value

    def write_rows(self, batch: list[dict[str, Any]]) -> None:
        cell, columns = self._cell, self.columns
        self._csv.writerows([[cell(row.get(c)) for c in columns] for row in batch])
        self.rows += len(batch)
        self._flush()

    def _flush(self) -> None:
        self.sink.write(self._buffer.getvalue().encode())
        self._buffer.seek(0)
        self._buffer.truncate()

    def close(self) -> None:
        return None


class ParquetWriter:
    """Parquet with one row group per batch; a file with zero rows still carries the schema."""

    def __init__(self, sink: Sink, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows = 0
        self._writer = pq.ParquetWriter(sink, schema, compression="zstd")

    def write_rows(self, batch: list[dict[str, Any]]) -> None:
        if batch:
            self.write_table(pa.Table.from_pylist(batch, schema=self.schema))

    def write_table(self, table: pa.Table) -> None:
        """One row group of rows already in Arrow form (the Postgres fast path parses them there)."""
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()


WRITERS: dict[str, type[JsonlWriter] | type[CsvWriter] | type[ParquetWriter]] = {
    "jsonl": JsonlWriter,
    "csv": CsvWriter,
    "parquet": ParquetWriter,
}


def make_writer(fmt: str, sink: Sink | BinaryIO, schema: pa.Schema) -> Writer:
    """The writer for `fmt` over `sink`."""
    return WRITERS[fmt](sink, schema)
