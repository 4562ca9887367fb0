"""A JSON array of objects. The text is decoded once and elements are parsed one by one, so each
record (and each error) carries the line it starts on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

from app.imports.parsers import limits
from app.imports.schemas import ImportIssue, RawRecord

_WS = " \t\r\n"


def parse_json_array(source: BinaryIO) -> Iterator[RawRecord | ImportIssue]:
    """Records of a JSON array file; a syntax error ends parsing (no later element can be located)."""
    data = source.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield ImportIssue(line, "encoding", f"not valid UTF-8 at byte {exc.start} of the file; save it as UTF-8")
        return
    del data  # keep one copy of the file in memory, not two
    text = text.removeprefix("\ufeff")
    decoder = limits.decoder()
    pos = _skip(text, 0)
    if pos >= len(text):
        return
    if text[pos] != "[":
        yield ImportIssue(1, "json", "expected a JSON array of objects")
        return
    pos = _skip(text, pos + 1)
    line, counted_to = 1, 0
    expect_value = True
    while pos < len(text):
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        char = text[pos]
        if char == "]" :
            if _skip(text, pos + 1) < len(text):
                yield ImportIssue(line, "json", "unexpected content after the closing ]")
            return
        if not expect_value:
            if char != ",":
                yield ImportIssue(line, "json", f"expected ',' or ']' between records, found {char!r}")
                return
            pos = _skip(text, pos + 1)
            expect_value = True
            continue
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield ImportIssue(exc.lineno, "json", f"malformed JSON at column {exc.colno}: {exc.msg}")
            return
        except RecursionError:
            yield ImportIssue(line, "json", "JSON nested too deeply")
            return
        except ValueError as exc:  # NaN/Infinity, or an integer too long to convert: the element's end is unknown
            yield ImportIssue(line, "json", limits.value_error_reason(exc))
            return
        problem = limits.unstorable(value) if isinstance(value, dict) else None
        if problem:
            yield ImportIssue(line, *problem)
        elif isinstance(value, dict):
            yield RawRecord(line, value)
        else:
            yield ImportIssue(line, "json", f"expected a JSON object, got {type(value).__name__}")
        pos = _skip(text, end)
        expect_value = False
    yield ImportIssue(line, "json", "the array is not closed with ]")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos
