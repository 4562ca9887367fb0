"""Plain input records for quality control, and the pairwise views derived from them.

Everything in `app.quality` takes these dataclasses (or plain rank mappings) as input, so the
database layer only has to build them from rows; nothing here knows about SQL or HTTP.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations

Id = Hashable
"""Identifier of a ranking, prompt, annotator or completion (str or int in practice)."""

Ranks = Mapping[Id, int]
"""Completion id -> rank, 1 = best; equal ranks are ties."""


@dataclass(frozen=True)
class RankingRecord:
    """One submitted ranking of the completions shown for one prompt.

    `lengths` are completion lengths in words (whitespace tokens); `seconds` is time on task;
    `model_of` maps each completion to the policy version or uploaded model that produced it.
    `created_at` (timezone-aware) is only needed for agreement over time.
    """

    ranking_id: Id
    prompt_id: Id
    annotator_id: Id
    ranks: Mapping[Id, int]
    shown_order: Sequence[Id]
    lengths: Mapping[Id, int] | None = None
    seconds: float | None = None
    is_ai: bool = False
    is_gold: bool = False
    model_of: Mapping[Id, str] | None = None
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.ranks:
            raise ValueError(f"ranking {self.ranking_id!r}: empty ranks")
        bad = [c for c, r in self.ranks.items() if not isinstance(r, int) or r < 1]
        if bad:
            raise ValueError(f"ranking {self.ranking_id!r}: ranks must be integers >= 1 (bad: {bad!r})")
        if self.shown_order and set(self.shown_order) != set(self.ranks):
            raise ValueError(f"ranking {self.ranking_id!r}: shown_order and ranks name different completions")


@dataclass(frozen=True)
class PairCounts:
    """Agreements out of comparable pairs; `rate` is None when nothing was comparable."""

    agree: float = 0.0
    total: float = 0.0

    @property
    def rate(self) -> float | None:
        return self.agree / self.total if self.total > 0 else None

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(self.agree + other.agree, self.total + other.total)


@dataclass(frozen=True)
class Comparison:
    """A strict preference: `winner` was ranked above `loser`, with a weight (default 1)."""

    winner: Id
    loser: Id
    weight: float = 1.0


@dataclass
class PromptGroup:
    """All rankings of one prompt, at most one per annotator (the last one given wins)."""

    prompt_id: Id
    by_annotator: dict[Id, RankingRecord] = field(default_factory=dict)


def sign(x: float) -> int:
    """-1, 0 or 1."""
    return (x > 0) - (x < 0)


def strict_pairs(ranks: Ranks) -> Iterator[tuple[Id, Id]]:
    """Yield (better, worse) for every pair ordered strictly by `ranks`; tied pairs are skipped."""
    for a, b in combinations(ranks, 2):
        if ranks[a] < ranks[b]:
            yield a, b
        elif ranks[b] < ranks[a]:
            yield b, a


def comparisons_from(ranks: Ranks, weight: float = 1.0) -> list[Comparison]:
    """Expand one ranking into its strict pairwise comparisons."""
    return [Comparison(w, lo, weight) for w, lo in strict_pairs(ranks)]


def order_to_ranks(order: Sequence[Id]) -> dict[Id, int]:
    """A strict best-first order as ranks 1..K."""
    return {c: i + 1 for i, c in enumerate(order)}


def group_by_prompt(records: Iterable[RankingRecord], *, humans_only: bool = True) -> dict[Id, PromptGroup]:
    """Group rankings per prompt and annotator.

    AI rankings are dropped when `humans_only` (the default: agreement figures are human-only).
    When an annotator ranked a prompt twice the later record is kept (by `created_at`, else
    input order), because reliability coefficients allow one value per coder and unit.
    """
    groups: dict[Id, PromptGroup] = {}
    for rec in records:
        if humans_only and rec.is_ai:
            continue
        g = groups.setdefault(rec.prompt_id, PromptGroup(rec.prompt_id))
        prev = g.by_annotator.get(rec.annotator_id)
        if prev is None or prev.created_at is None or rec.created_at is None or rec.created_at >= prev.created_at:
            g.by_annotator[rec.annotator_id] = rec
    return groups
