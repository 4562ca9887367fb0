"""Reading an uploaded file into raw records: format detection and one parser per format.

Every parser streams from a binary file object (the spooled upload or an opened file) and yields
`RawRecord`s and `ImportIssue`s in file order; none of them stops at the first problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from app.imports.parsers.csv_rows import parse_csv
from app.imports.parsers.json_array import parse_json_array
from app.imports.parsers.jsonl import parse_jsonl
from app.imports.parsers.long_format import group_long_rows
from app.imports.schemas import FileFormat, ImportIssue, ImportOptions, RawRecord

_EXTENSIONS: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
}


def detect_format(file_name: str, head: bytes) -> FileFormat:
    """The format from the first bytes of the file, falling back on the extension.

    Content wins where it is unambiguous: `[` opens a JSON array and `{` a JSON object per line, whatever
    the file is called; anything else is read as CSV unless the extension says JSON.
    """
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    lowered = file_name.lower()
    for extension, fmt in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return fmt
    return "csv"


def iter_records(source: BinaryIO, fmt: FileFormat, options: ImportOptions) -> Iterator[RawRecord | ImportIssue]:
    """Raw records of `source` read as `fmt`; long-format options group rows into one record per prompt."""
    if fmt == "jsonl":
        records: Iterator[RawRecord | ImportIssue] = parse_jsonl(source)
    elif fmt == "json":
        records = parse_json_array(source)
    else:
        records = parse_csv(source)
    if options.long_format:
        return group_long_rows(records, options)
    return records
