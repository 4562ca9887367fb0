"""Export kinds, formats and filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

ExportKind = Literal["pairs", "rankings", "rm", "prompts", "sft", "consensus"]
ExportFormat = Literal["jsonl", "csv", "parquet"]
KINDS: tuple[str, ...] = get_args(ExportKind)
FORMATS: tuple[str, ...] = get_args(ExportFormat)
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}
MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}


@dataclass(frozen=True)
class ExportFilters:
    """Which rows to export. `model_version_id`: only rows whose completions that model version sampled.
    `trained_version_id`: only the rows in that version's training data (its lineage; see `TRAINED_KINDS`)."""

    since: datetime | None = None
    annotator_id: int | None = None
    model_version_id: int | None = None
    # Leave out what the AI annotator labelled (labeler reward-model / llm-judge:…); imported labels stay.
    humans_only: bool = False
    trained_version_id: int | None = None


# The lineage a training job records for a version, and the export kinds whose rows it names: reward models
# and DPO policies train on comparisons (a ranking's row is in when one of its comparisons is), SFT policies
# on demonstrations, PPO/RLOO policies on the prompts of their rollouts.
TRAINED_KINDS: dict[str, tuple[str, ...]] = {
    "comparisons": ("pairs", "rankings", "rm"),
    "demonstrations": ("sft",),
    "prompts": ("prompts",),
}


@dataclass(frozen=True)
class ExportOptions:
    """Shape options: `margin_column` adds `margin` to pairs: the preference strength of a pairwise choice
    (1 slightly, 2 better, 3 much better), the rank gap of a pair from a ranking. Off by default, so the
    default export stays TRL's plain preference format."""

    margin_column: bool = False
    # CSV of a conversational project: write each conversation as "role: content" turns instead of refusing.
    flatten_chat: bool = False


class ExportQuery(BaseModel):
    """The query string of an export download (the admin page's form and the API take the same)."""

    # `model_version` is a field, not pydantic API: no "model_" namespace warning (pydantic < 2.10 warns).
    model_config = ConfigDict(protected_namespaces=())

    kind: ExportKind = "pairs"
    format: ExportFormat = "jsonl"
    since: str | None = Field(default=None, max_length=64, description="ISO date/datetime, UTC if naive")
    annotator: str | None = Field(default=None, max_length=320, description="email or user id")
    model_version: str | None = Field(default=None, max_length=20, description="model version id")
    trained_version: str | None = Field(default=None, max_length=200,
                                        description="model version id or name: only the rows that trained it")
    margin_column: bool = False
    humans_only: bool = Field(default=False, description="leave out the AI annotator's labels (labeler "
                                                          "reward-model or llm-judge:…)")
    flatten_chat: bool = Field(default=False, description="CSV of a conversational project: write each "
                                                           "conversation as 'role: content' turns")
