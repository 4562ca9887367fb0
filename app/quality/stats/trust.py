"""Annotator trust: agreement with the leave-one-out consensus and with gold, a Wilson interval,
and the trust weight given to each ranking (for reward-model training and the export).

Weight formula (docs/quality.md): p~ = (agree + prior_n * prior_rate) / (total + prior_n) pooled over
consensus pairs and gold constraints; weight = clip(2 p~ - 1, floor, 1). 2p - 1 is the
chance-corrected agreement for a binary "which is better" judgement (0 for a coin, 1 for perfect);
the prior keeps a newcomer at about 0.6 until evidence accumulates.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from app.quality.stats.consensus import pairwise_margins, ranked_pairs
from app.quality.stats.records import Id, PairCounts, RankingRecord, group_by_prompt, order_to_ranks, sign


def wilson_interval(successes: float, n: float, z: float = 1.959964) -> tuple[float | None, float | None]:
    """Wilson score interval for a binomial proportion (Wilson 1927); (None, None) when n = 0."""
    if n <= 0:
        return None, None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def loo_consensus_counts(records: Iterable[RankingRecord]) -> dict[Id, PairCounts]:
    """Per annotator: pairs agreeing with the consensus of the *other* humans on the same prompt.

    The consensus is ranked pairs over the other human rankings. Only pairs the others do not
    split evenly (non-zero margin) and that the annotator orders strictly are counted. AI
    rankings are scored too (against the human consensus) but never join a consensus.
    """
    records = list(records)
    humans = group_by_prompt(records)
    counts: dict[Id, PairCounts] = defaultdict(PairCounts)
    for rec in records:
        g = humans.get(rec.prompt_id)
        others = [r.ranks for a, r in g.by_annotator.items() if a != rec.annotator_id] if g else []
        if not others:
            continue
        margins = pairwise_margins(others)
        cons = order_to_ranks(ranked_pairs(others))
        agree = total = 0
        for (x, y), m in margins.items():
            # each unordered pair appears twice in margins; count it once, and only if decided
            if m <= 0 or x not in rec.ranks or y not in rec.ranks:
                continue
            s = sign(rec.ranks[y] - rec.ranks[x])  # +1: annotator puts x above y
            if s == 0:
                continue
            total += 1
            agree += s == sign(cons[y] - cons[x])
        counts[rec.annotator_id] = counts[rec.annotator_id] + PairCounts(agree, total)
    return dict(counts)


def trust_weight(counts: PairCounts, prior_rate: float = 0.8, prior_n: float = 4.0, floor: float = 0.1) -> float:
    """clip(2 p~ - 1, floor, 1) with p~ the agreement rate shrunk towards `prior_rate`."""
    p = (counts.agree + prior_n * prior_rate) / (counts.total + prior_n)
    return min(1.0, max(floor, 2.0 * p - 1.0))


@dataclass(frozen=True)
class AnnotatorTrust:
    """Trust evidence of one annotator; rates are None without evidence."""

    annotator_id: Id
    consensus: PairCounts
    gold: PairCounts
    weight: float

    @property
    def pooled(self) -> PairCounts:
        return self.consensus + self.gold

    @property
    def agreement(self) -> float | None:
        return self.pooled.rate

    @property
    def ci(self) -> tuple[float | None, float | None]:
        return wilson_interval(self.pooled.agree, self.pooled.total)

    def to_dict(self) -> dict[str, float | None]:
        lo, hi = self.ci
        return {
            "agreement": self.agreement,
            "ci_low": lo,
            "ci_high": hi,
            "consensus_agreement": self.consensus.rate,
            "consensus_pairs": self.consensus.total,
            "gold_accuracy": self.gold.rate,
            "gold_constraints": self.gold.total,
            "weight": self.weight,
        }


def annotator_trust(
    records: Iterable[RankingRecord], gold_counts: Mapping[Id, PairCounts] | None = None, floor: float = 0.1
) -> dict[Id, AnnotatorTrust]:
    """Trust of every annotator in `records` from LOO consensus and (optional) gold counts."""
    records = list(records)
    cons = loo_consensus_counts(records)
    gold = gold_counts or {}
    out: dict[Id, AnnotatorTrust] = {}
    for ann in dict.fromkeys(r.annotator_id for r in records):
        c, g = cons.get(ann, PairCounts()), gold.get(ann, PairCounts())
        out[ann] = AnnotatorTrust(ann, c, g, trust_weight(c + g, floor=floor))
    return out


def ranking_weights(
    records: Iterable[RankingRecord],
    trust: Mapping[Id, AnnotatorTrust],
    too_fast: Iterable[Id] = (),
    fast_factor: float = 0.5,
    floor: float = 0.1,
) -> dict[Id, float]:
    """Weight per ranking_id: the annotator's weight, times `fast_factor` for rankings flagged as
    too fast to have been read, never below `floor`."""
    fast = set(too_fast)
    out: dict[Id, float] = {}
    for r in records:
        t = trust.get(r.annotator_id)
        w = t.weight if t is not None else trust_weight(PairCounts(), floor=floor)
        out[r.ranking_id] = max(floor, w * (fast_factor if r.ranking_id in fast else 1.0))
    return out
