"""CSV with a header row: BOM, CRLF, quoted newlines, and `,` `;` tab or `|` delimiters (sniffed from the header)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

from app.imports.parsers.lines import LineReader
from app.imports.schemas import ImportIssue, RawRecord

_DELIMITERS = (",", ";", "\t", "|")
# The csv module refuses fields over 128 KiB by default; our own per-field limit (1 MB) is checked later
# with a clear message, so the module's limit only has to be larger than that.
csv.field_size_limit(16 * 1024 * 1024)


def sniff_delimiter(header: str) -> str:
    """The delimiter that occurs most often in the header line outside quotes (comma on a tie)."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(_DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def parse_csv(source: BinaryIO) -> Iterator[RawRecord | ImportIssue]:
    """One record per data row, keyed by the header; every row's line is where the row starts."""
    reader = LineReader(source)
    lines = iter(reader)
    first = next(lines, None)
    yield from reader.drain()
    while first is not None and not first.strip():
        first = next(lines, None)
    if first is None:
        yield ImportIssue(0, "file", "the file is empty: expected a header row and at least one data row")
        return
    delimiter = sniff_delimiter(first)

    def all_lines() -> Iterator[str]:
        yield first
        yield from lines

    rows = csv.reader(all_lines(), delimiter=delimiter, strict=False)
    try:
        header = next(rows)
    except csv.Error as exc:
        yield ImportIssue(reader.line, "header", f"unreadable header: {exc}")
        return
    columns = [name.strip() for name in header]
    if not any(columns):
        yield ImportIssue(reader.line, "header", "the header row has no column names")
        return
    duplicates = sorted(name for name, n in Counter(columns).items() if name and n > 1)  # linear: 20k columns
    if duplicates:
        yield ImportIssue(reader.line, "header", f"duplicate column names: {', '.join(duplicates)}")
        return
    data_rows = 0
    while True:
        start = reader.line + 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            yield from reader.drain()
            yield ImportIssue(start, "csv", f"malformed row: {exc}")
            continue
        yield from reader.drain()
        if not row or all(not cell.strip() for cell in row):
            continue
        data_rows += 1
        if len(row) > len(columns):
            yield ImportIssue(start, "csv", f"the row has {len(row)} fields but the header has {len(columns)}")
            continue
        # Columns without a name (a pandas index, for one) carry no meaning for us and are dropped.
        record = {name: value for name, value in zip(columns, row, strict=False) if name}
        yield RawRecord(start, record, tabular=True)
    yield from reader.drain()
    if data_rows == 0:
        yield ImportIssue(1, "file", "the file has a header row but no data rows")
