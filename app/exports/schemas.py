"""Export kinds, formats and filters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

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
    """Which rows to export. `model_version_id`: only rows whose completions that model version sampled."""

    since: datetime | None = None
    annotator_id: int | None = None
    model_version_id: int | None = None


@dataclass(frozen=True)
class ExportOptions:
    """Shape options: `margin_column` adds `margin` (= rank_gap) to pairs."""

    margin_column: bool = False
