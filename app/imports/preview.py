"""What a file looks like before it is imported: format, columns, first rows, layout and a guessed mapping.

The upload page sends the first bytes of the chosen file (not the whole file); the preview parses what is
complete of them with the import's own parsers and guesses which column is the prompt, the completion, the
model and the id from the header (`context`/`sample`/`model_type` of the InstructGPT samples included).
The guess only fills the form: the admin confirms or changes it before anything is imported.

`group_issues` turns a failed import's list of problems into one line per kind of problem with its count
and first lines, and `hint_for` adds the likely fix ("did you mean `context`?").
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.imports.parsers import detect_format, iter_records
from app.imports.schemas import ImportIssue, ImportOptions, RawRecord

PREVIEW_BYTES = 256 * 1024
PREVIEW_ROWS = 5
_CELL_CHARS = 160

# Column names by role, most likely first; matched case-insensitively.
_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt", "context", "question", "instruction", "query", "input", "post", "text", "conversation"),
    "completion": ("completion", "sample", "response", "output", "answer", "generation", "reply", "summary"),
    "model": ("model", "model_type", "model_name", "policy", "generator", "source_model"),
    "id": ("id", "prompt_id", "uid", "uuid", "example_id"),
}
_WIDE = re.compile(r"(completion|response|answer|output)_?\d+", re.I)


@dataclass
class Preview:
    """The first rows of a file and what the import would make of them."""

    format: str
    columns: list[str]
    rows: list[dict[str, str]]
    layout: str
    mapping: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "columns": self.columns, "rows": self.rows, "layout": self.layout,
                "mapping": self.mapping, "problems": self.problems}


def preview(head: bytes, file_name: str) -> Preview:
    """Parse the complete lines of `head` (the first bytes of a file) and guess how to import it."""
    fmt = detect_format(file_name, head[:4096])
    if len(head) >= PREVIEW_BYTES and fmt != "json":
        head = head[: head.rfind(b"\n") + 1] or head  # drop the line the cut went through
    records: list[RawRecord] = []
    problems: list[str] = []
    for item in iter_records(io.BytesIO(head), fmt, ImportOptions(format=fmt)):
        if isinstance(item, RawRecord):
            records.append(item)
        elif len(problems) < 3 and not (fmt == "json" and len(head) >= PREVIEW_BYTES):
            problems.append(f"line {item.line}: {item.reason}")
        if len(records) >= 200:
            break
    columns = _columns(records)
    mapping = guess_mapping(columns) if fmt == "csv" else {}
    layout = _layout(records, columns, mapping)
    if layout == "long" and "completion_column" not in mapping:
        layout = "prompts only"
    rows = [{c: _cell(r.data.get(c)) for c in columns} for r in records[:PREVIEW_ROWS]]
    return Preview(fmt, columns, rows, layout, mapping if layout == "long" else
                   {k: v for k, v in mapping.items() if k == "prompt_column"}, problems)


def guess_mapping(columns: list[str]) -> dict[str, str]:
    """Form values (`prompt_column`, `completion_column`, `model_column`, `id_column`) guessed from a header."""
    lowered = {c.lower(): c for c in columns if c}
    out: dict[str, str] = {}
    for role, names in _ROLE_NAMES.items():
        for name in names:
            if name in lowered and lowered[name] not in out.values():
                out[f"{role}_column"] = lowered[name]
                break
    return out


def _columns(records: list[RawRecord]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        for key in record.data:
            seen.setdefault(str(key), None)
    return list(seen)


def _layout(records: list[RawRecord], columns: list[str], mapping: dict[str, str]) -> str:
    keys = set(columns)
    if {"chosen", "rejected"} <= keys or {"preferred_output", "non_preferred_output"} <= keys:
        return "preference pairs"
    if "annotations" in keys and "data" in keys:
        return "Label Studio export"
    if "fields" in keys and "responses" in keys or any(k.endswith(".responses") for k in keys):
        return "Argilla export"
    if "ranks" in keys or "ranking" in keys or "rankings" in keys:
        return "rankings"
    if "completions" in keys or any(_WIDE.fullmatch(k) for k in keys):
        return "wide"
    if mapping.get("prompt_column") and mapping.get("completion_column"):
        return "long"  # one row per completion, grouped by the prompt column
    return "prompts only" if mapping.get("prompt_column") or keys & {"prompt", "messages"} else "unknown"


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else ("" if value is None else repr(value))
    text = " ".join(text.split())
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


@dataclass(frozen=True)
class IssueGroup:
    """One kind of problem of a failed import: how many lines have it and the first few."""

    field: str
    reason: str
    count: int
    lines: list[int]
    hint: str = ""


def group_issues(issues: list[ImportIssue], columns: list[str] | None = None, first: int = 5) -> list[IssueGroup]:
    """Problems grouped by (field, reason), most frequent first, each with its first lines and a likely fix."""
    counts: Counter[tuple[str, str]] = Counter()
    lines: dict[tuple[str, str], list[int]] = {}
    for issue in issues:
        key = (issue.field, issue.reason)
        counts[key] += 1
        lines.setdefault(key, [])
        if len(lines[key]) < first:
            lines[key].append(issue.line)
    return [IssueGroup(f, r, n, lines[(f, r)], hint_for(f, r, columns or []))
            for (f, r), n in counts.most_common()]


def hint_for(field_name: str, reason: str, columns: list[str]) -> str:
    """The likely fix of one kind of problem, given the file's columns ("" when there is none to offer)."""
    guess = guess_mapping([c for c in columns if c != "prompt"])
    if field_name == "prompt" and reason.startswith("missing prompt") and "prompt" not in columns:
        if "prompt_column" in guess:
            return (f"the file has no `prompt` column; did you mean `{guess['prompt_column']}`? "
                    "Choose it as the prompt column")
        if columns:
            return f"the file has no `prompt` column; choose the prompt column among {', '.join(columns[:12])}"
    if field_name == "header" and "not found" in reason and columns:
        return f"the columns are: {', '.join(columns[:20])}"
    if field_name == "completions" and "at most" in reason:
        return ("one prompt text has too many rows: if it appears under several values of another column "
                "(such as a prompt type), list that column and the prompt column as key columns")
    return ""
