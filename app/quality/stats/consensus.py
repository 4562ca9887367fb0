"""Consensus ranking of one prompt's completions from several rankings.

Ranked pairs (Tideman 1987) gives the consensus order; Bradley-Terry and Plackett-Luce give scores.
Rankings can carry trust weights. The tie rule of ranked pairs is documented in `ranked_pairs`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.quality.stats.choice_models import bradley_terry, plackett_luce
from app.quality.stats.records import (
    Id,
    RankingRecord,
    Ranks,
    comparisons_from,
    group_by_prompt,
    strict_pairs,
)


def pairwise_margins(rankings: Sequence[Ranks], weights: Sequence[float] | None = None) -> dict[tuple[Id, Id], float]:
    """margin[(a, b)] = weight of rankings putting a above b minus weight putting b above a.

    Both (a, b) and (b, a) are present for every pair some ranking orders, with opposite signs.
    """
    ws = list(weights) if weights is not None else [1.0] * len(rankings)
    m: dict[tuple[Id, Id], float] = defaultdict(float)
    for ranks, w in zip(rankings, ws, strict=True):
        for better, worse in strict_pairs(ranks):
            m[(better, worse)] += w
            m[(worse, better)] -= w
    return dict(m)


def _reaches(edges: Mapping[Id, set[Id]], start: Id, target: Id) -> bool:
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == target:
            return True
        for nxt in edges.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def ranked_pairs(rankings: Sequence[Ranks], weights: Sequence[float] | None = None) -> list[Id]:
    """Tideman's ranked pairs: a strict best-first consensus order of every item ranked.

    Pairs with a positive margin are locked in order of decreasing margin, skipping any that would
    close a cycle with pairs already locked. Deterministic tie rule (after Zavist & Tideman 1989): a
    tie-breaking ranking of the items (TBRC) orders them by total net margin (sum of their margins,
    descending), then by the string form of the id. Equal-margin pairs are taken winner-first by
    TBRC, and for the same winner the pair whose loser is lower in the TBRC first. The final order
    takes, at each step, the first item in TBRC that no remaining item beats through a locked pair.
    """
    items: list[Id] = []
    for r in rankings:
        items.extend(c for c in r if c not in items)
    margins = pairwise_margins(rankings, weights)
    net = {c: sum(v for (a, _), v in margins.items() if a == c) for c in items}
    tbrc = {c: i for i, c in enumerate(sorted(items, key=lambda c: (-net[c], str(c))))}
    pairs = sorted(
        ((a, b) for (a, b), v in margins.items() if v > 0),
        key=lambda p: (-margins[p], tbrc[p[0]], -tbrc[p[1]]),
    )
    locked: dict[Id, set[Id]] = defaultdict(set)
    for a, b in pairs:
        if not _reaches(locked, b, a):
            locked[a].add(b)
    order: list[Id] = []
    remaining = sorted(items, key=lambda c: tbrc[c])
    while remaining:
        beaten = {b for a in remaining for b in locked.get(a, ()) if b in remaining}
        pick = next(c for c in remaining if c not in beaten)
        order.append(pick)
        remaining.remove(pick)
    return order


@dataclass(frozen=True)
class Consensus:
    """Consensus of one prompt: ranked-pairs order and BT / PL log-strengths (mean 0)."""

    prompt_id: Id
    order: list[Id]
    bradley_terry: dict[Id, float]
    plackett_luce: dict[Id, float]
    n_rankings: int

    def to_dict(self) -> dict[str, object]:
        return {
            "prompt_id": self.prompt_id,
            "order": list(self.order),
            "bradley_terry": dict(self.bradley_terry),
            "plackett_luce": dict(self.plackett_luce),
            "n_rankings": self.n_rankings,
        }


def consensus_of(
    prompt_id: Id, rankings: Sequence[Ranks], weights: Sequence[float] | None = None, l2: float = 0.01
) -> Consensus:
    """All three consensus views of one prompt's rankings."""
    ws = list(weights) if weights is not None else [1.0] * len(rankings)
    comps = [c for r, w in zip(rankings, ws, strict=True) for c in comparisons_from(r, w)]
    items = [c for r in rankings for c in r]
    return Consensus(
        prompt_id=prompt_id,
        order=ranked_pairs(rankings, ws),
        bradley_terry=bradley_terry(comps, items, l2=l2),
        plackett_luce=plackett_luce(rankings, ws, l2=l2),
        n_rankings=len(rankings),
    )


def consensus_subset(
    records: Iterable[RankingRecord], weights: Mapping[Id, float] | None = None, min_rankings: int = 2
) -> dict[Id, Consensus]:
    """Consensus for every prompt with at least `min_rankings` human rankings (the export's consensus
    subset). `weights` maps ranking_id -> trust weight (default 1)."""
    out: dict[Id, Consensus] = {}
    for pid, g in group_by_prompt(records).items():
        recs = list(g.by_annotator.values())
        if len(recs) >= min_rankings:
            w = [1.0 if weights is None else weights.get(r.ranking_id, 1.0) for r in recs]
            out[pid] = consensus_of(pid, [r.ranks for r in recs], w)
    return out
