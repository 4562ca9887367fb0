"""What every dialect returns, and the small rules they share (which field holds the prompt, kept fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.imports.schemas import ImportIssue, RawRecord

# Field names that hold the prompt in the tools' own templates, most specific first.
PROMPT_NAMES = ("prompt", "instruction", "question", "query", "input", "context", "text", "conversation")


@dataclass
class Translation:
    """One record translated into prefloop's shape (`record`), or the reasons it cannot be (`issues`)."""

    dialect: str
    record: RawRecord
    issues: list[ImportIssue] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # field paths kept verbatim in metadata
    skipped: list[str] = field(default_factory=list)  # what was deliberately not imported, one reason each

    def fail(self, field_name: str, reason: str) -> Translation:
        self.issues.append(ImportIssue(self.record.line, field_name, f"{self.dialect}: {reason}"))
        return self


def pick_prompt(values: dict[str, Any], exclude: set[str]) -> str | None:
    """The key of the prompt among `values`: a known prompt name, else the only text field left."""
    candidates = [k for k, v in values.items() if k not in exclude and isinstance(v, str | list)]
    for name in PROMPT_NAMES:
        if name in candidates:
            return name
    texts = [k for k in candidates if isinstance(values[k], str)]
    return texts[0] if len(texts) == 1 else None


def keep(kept: dict[str, Any], translation: Translation, prefix: str, values: dict[str, Any],
         used: set[str]) -> None:
    """Keep every value of `values` not in `used` under `kept`, and name it among the unmapped fields."""
    for key, value in values.items():
        if key in used or value in (None, "", [], {}):
            continue
        kept[f"{prefix}{key}"] = value
        translation.unmapped.append(f"{prefix}{key}")


def record(line: int, data: dict[str, Any], kept: dict[str, Any]) -> RawRecord:
    """The translated record, with what was kept verbatim under `metadata.imported`."""
    if kept:
        data["metadata"] = {**(data.get("metadata") or {}), "imported": kept}
    return RawRecord(line, data)


def text_of(value: Any) -> str | None:
    """A completion's text from a string or a tool's item object (`body`, `text`, `content`, `html`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("body", "text", "content", "value", "html", "title"):
            found = value.get(key)
            if isinstance(found, str):
                return found
    return None
