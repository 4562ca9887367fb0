"""Shapes of an import: the options a caller picks, one problem found in a file, the parsed records, the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FileFormat = Literal["jsonl", "json", "csv"]
MAX_FIELD_BYTES = 1024 * 1024
MAX_COMPLETIONS = 16
# Every problem is reported, but a file with millions of bad lines should not produce a report larger than
# itself: after this many, only the total count grows.
MAX_REPORTED_ISSUES = 10_000


class ImportOptions(BaseModel):
    """How to read a file. Column options turn on the long (one row per completion) layout."""

    # `model_column` is a field, not pydantic API: no "model_" namespace warning (pydantic < 2.10 warns).
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    format: FileFormat | None = None
    prompt_column: str | None = Field(default=None, max_length=200)
    completion_column: str | None = Field(default=None, max_length=200)
    model_column: str | None = Field(default=None, max_length=200)
    id_column: str | None = Field(default=None, max_length=200)
    key_columns: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("prompt_column", "completion_column", "model_column", "id_column", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key_columns", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def long_format(self) -> bool:
        return self.completion_column is not None


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """One problem in a file: the line (1-based; 0 for the whole file), the field, and why."""

    line: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read from the file, before validation. `tabular`: its values were CSV cells."""

    line: int
    data: dict[str, Any]
    tabular: bool = False


@dataclass(slots=True)
class CompletionIn:
    text: str
    model: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RankingIn:
    """One imported judgement of a prompt's completions: completion index -> rank (1 = best, ties equal, dense).

    A chosen/rejected pair is the ranking {chosen: 1, rejected: 2}. `origin` records where it came from (the
    tool, its annotator's id there, fields kept verbatim); imported annotators are not accounts here.
    """

    ranks: dict[int, int]
    rationale: str = ""
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PromptIn:
    """A validated prompt with its completions, (for preference files) the imported rankings of them, and
    (for prompt-completion files) its demonstrations."""

    line: int
    external_id: str
    content_hash: str
    text: str | None
    messages: list[dict[str, str]] | None
    system: str | None
    meta: dict[str, Any]
    completions: list[CompletionIn]
    rankings: list[RankingIn] = field(default_factory=list)
    id_given: bool = False
    # Ideal answers for the prompt (SFT training data), stored as demonstrations, not as candidates.
    demonstrations: list[str] = field(default_factory=list)

    @property
    def ranked(self) -> bool:
        return bool(self.rankings)


@dataclass
class ImportOutcome:
    """What an import did (or why it did nothing)."""

    ok: bool
    file_name: str
    file_format: str
    import_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    issues: list[ImportIssue] = field(default_factory=list)
    issue_count: int = 0
    # What was read but not mapped (kept verbatim in metadata) or deliberately left out, one sentence each.
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "import_id": self.import_id,
            "file_name": self.file_name,
            "format": self.file_format,
            "counts": self.counts,
            "error_count": self.issue_count,
            "errors": [issue.as_dict() for issue in self.issues],
            "notes": list(self.notes),
        }


class ImportStarted(BaseModel):
    """The answer to an upload: the import runs in the background; poll `status_url`."""

    import_id: int
    status: str
    file_name: str
    format: str
    status_url: str


class ImportProgressOut(BaseModel):
    """A running import: `queued`, `checking` (`count` lines read) or `importing` (`count` prompts written)."""

    phase: str
    count: int = 0


class ImportStatus(BaseModel):
    """One import: `running` with its progress, or finished (`succeeded` with counts, `failed` with every problem;
    a failed import wrote nothing)."""

    import_id: int
    status: str
    file_name: str
    format: str
    progress: ImportProgressOut | None = None
    ok: bool | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    error_count: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    detail: str | None = None
