"""JSON Lines: one JSON object per line; blank lines are ignored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

from app.imports.parsers import limits
from app.imports.parsers.lines import LineReader
from app.imports.schemas import ImportIssue, RawRecord


def parse_jsonl(source: BinaryIO) -> Iterator[RawRecord | ImportIssue]:
    """Records of a JSONL file, with an issue for every line that is not a JSON object."""
    reader = LineReader(source)
    for text in reader:
        yield from reader.drain()
        if not text.strip():
            continue
        try:
            value = limits.loads(text)
        except json.JSONDecodeError as exc:
            yield ImportIssue(reader.line, "json", f"malformed JSON at column {exc.colno}: {exc.msg}")
            continue
        except RecursionError:
            yield ImportIssue(reader.line, "json", "JSON nested too deeply")
            continue
        except ValueError as exc:
            yield ImportIssue(reader.line, "json", limits.value_error_reason(exc))
            continue
        if not isinstance(value, dict):
            yield ImportIssue(reader.line, "json", f"expected a JSON object, got {type(value).__name__}")
            continue
        problem = limits.unstorable(value)
        if problem:
            yield ImportIssue(reader.line, *problem)
            continue
        yield RawRecord(reader.line, value)
    yield from reader.drain()
