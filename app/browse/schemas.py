"""What the data browser's pages take (filters, paging) and what its services hand them (rows, views)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.models import Completion, Prompt

PromptStatus = Literal["", "pending", "complete", "unranked", "archived"]
PROMPT_STATUSES: tuple[tuple[str, str], ...] = (
    ("", "any"),
    ("pending", "still being labeled"),
    ("complete", "every ranking in"),
    ("unranked", "no ranking yet"),
    ("archived", "archived"),
)
GoldFilter = Literal["", "yes", "no"]

T = TypeVar("T")


def _blank_is_none(value: Any) -> Any:
    """A filter menu's "any" choice arrives as an empty string."""
    return None if isinstance(value, str) and not value.strip() else value


OptionalId = Annotated[Annotated[int, Field(ge=1, le=2**63 - 1)] | None, BeforeValidator(_blank_is_none)]
OptionalRound = Annotated[Annotated[int, Field(ge=0, le=1_000_000)] | None, BeforeValidator(_blank_is_none)]

PAGE_SIZE = 25
MAX_PAGE = 400
"""Offset paging with a cap: page 400 of 25 reaches the 10,000th row; narrower filters find the rest."""
COUNT_CAP = 10_000
"""Counts stop here (shown as "10000+"), so a broad search never scans a whole table just to number pages."""


class DataFilter(BaseModel):
    """The filters of the prompt and ranking lists, as query parameters (an empty value means "any")."""

    # `model_version` is a filter, not pydantic API (pydantic < 2.10 warns about the "model_" prefix).
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    q: str = Field("", max_length=200, description="words in the prompt text or a completion text")
    status: PromptStatus = ""
    prompt: OptionalId = None
    annotator: OptionalId = None
    model_version: OptionalId = None
    trained_by: OptionalId = None  # a model version: only what trained it (its lineage)
    flag: str = Field("", max_length=100, description="a flag name, or * for any flag")
    gold: GoldFilter = ""
    round: OptionalRound = None
    page: int = Field(1, ge=1, le=MAX_PAGE)

    def query_string(self, **override: object) -> str:
        """These filters as a query string (for pager links), with some values replaced."""
        values = {**self.model_dump(), **override}
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and not (k == "page" and v == 1)})


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and how many rows match (capped at COUNT_CAP)."""

    rows: list[T]
    total: int
    page: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, min(MAX_PAGE, -(-self.total // self.size)))

    @property
    def capped(self) -> bool:
        return self.total >= COUNT_CAP


@dataclass(frozen=True)
class PromptRow:
    """A prompt in the list: its text and what it has."""

    prompt: Prompt
    completions: int
    rankings: int
    open_slots: int
    archived: bool


@dataclass(frozen=True)
class RankingRow:
    """A ranking in the list."""

    id: int
    prompt_id: int
    prompt_text: str
    annotator: str
    source: str
    shown: int
    flagged: int
    has_rationale: bool
    gold: bool
    round: int
    created_at: datetime


@dataclass(frozen=True)
class ShownItem:
    """One answer as the annotator saw it: its letter (display order), text, rank, tie, flags, likert."""

    letter: str
    completion: Completion
    rank: int | None
    tied: bool
    flags: list[str]
    likert: int | None


@dataclass(frozen=True)
class RankingView:
    """A ranking as the annotator saw it."""

    id: int
    prompt: Prompt
    annotator: str
    source: str
    items: list[ShownItem]
    order: str
    """The ranking in letters, best first: "C > A = B > D"."""
    rationale: str
    not_rankable: bool
    demonstration: str | None
    strength: int | None
    wall_seconds: float | None
    active_seconds: float | None
    version: int
    created_at: datetime
    revised_at: datetime | None
    gold_assignment: bool
    round: int


@dataclass(frozen=True)
class SkipRow:
    """A skipped task: who skipped which prompt, when, and why."""

    assignment_id: int
    prompt_id: int
    prompt_text: str
    annotator: str
    round: int
    reason: str
    skipped_at: datetime | None


@dataclass(frozen=True)
class Dependents:
    """Everything that belongs to a prompt, counted, for the delete/archive confirmation."""

    completions: int = 0
    slots_open: int = 0
    slots_leased: int = 0
    slots_done: int = 0
    assignments: int = 0
    skipped: int = 0
    rankings: int = 0
    ranking_versions: int = 0
    comparisons: int = 0
    demonstrations: int = 0
    trained_versions: int = 0
    """Model versions whose training data or rollouts included this prompt's comparisons or the prompt."""
    test_sets: int = 0

    @property
    def lineage(self) -> bool:
        """Whether deleting would destroy labels or training lineage (so the prompt may only be archived)."""
        return bool(self.rankings or self.comparisons or self.demonstrations or self.trained_versions
                    or self.test_sets)
