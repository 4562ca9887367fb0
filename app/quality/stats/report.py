"""`compute_quality`: every quality measure of a project assembled into the API's JSON shape.

`QualityReport.to_dict()` is what the API returns (the DB layer adds `reward_models`); values that
cannot be computed are None, never NaN. `ranking_weights` is for storage, not for the JSON.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from app.quality.stats.agreement import (
    AgreementSummary,
    agreement_by_day,
    agreement_by_pair,
    project_agreement,
)
from app.quality.stats.bias import length_rank_correlation, median_seconds, position_bias, time_outliers
from app.quality.stats.gold import GoldFlag, GoldScore, GoldSpec, flag_annotators, score_gold
from app.quality.stats.leaderboard import LeaderboardRow, leaderboard
from app.quality.stats.records import Id, PairCounts, RankingRecord
from app.quality.stats.trust import annotator_trust, ranking_weights


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples become lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


@dataclass
class QualityReport:
    """All quality figures of one project."""

    agreement: AgreementSummary
    agreement_by_pair: dict[tuple[Id, Id], AgreementSummary]
    agreement_by_day: dict[date, AgreementSummary]
    annotators: list[dict[str, Any]]
    leaderboard: list[LeaderboardRow]
    bias: dict[str, Any]
    gold_flags: list[GoldFlag]
    ranking_weights: dict[Id, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        agreement = {
            **self.agreement.to_dict(),
            "by_pair": [{"a": a, "b": b, **s.to_dict()} for (a, b), s in self.agreement_by_pair.items()],
            "by_day": [{"day": d.isoformat(), **s.to_dict()} for d, s in self.agreement_by_day.items()],
        }
        out: dict[str, Any] = _clean({
            "agreement": agreement,
            "annotators": self.annotators,
            "leaderboard": [r.to_dict() for r in self.leaderboard],
            "bias": self.bias,
        })
        return out


def _specs_by_prompt(gold_specs: Iterable[GoldSpec] | Mapping[Id, GoldSpec]) -> dict[Id, GoldSpec]:
    if isinstance(gold_specs, Mapping):
        return dict(gold_specs)
    return {s.prompt_id: s for s in gold_specs}


def compute_quality(
    records: Iterable[RankingRecord],
    gold_specs: Iterable[GoldSpec] | Mapping[Id, GoldSpec] = (),
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    gold_threshold: float = 0.7,
    gold_min_items: int = 5,
    bias_alpha: float = 0.01,
    max_words_per_second: float = 10.0,
) -> QualityReport:
    """Compute agreement, trust, gold, bias and the leaderboard for a project's rankings.

    Gold specs are matched to rankings by prompt id. Trust weights feed the leaderboard; AI
    rankings appear among annotators (flagged `is_ai`) but not in agreement or the leaderboard.
    Gold items (`is_gold`) count for gold accuracy and trust only: they are built to be easy, so
    they would inflate agreement, and their degraded completions belong to no model.
    """
    records = list(records)
    regular = [r for r in records if not r.is_gold]
    specs = _specs_by_prompt(gold_specs)

    gold_scores: dict[Id, list[GoldScore]] = defaultdict(list)
    for r in records:
        if r.prompt_id in specs:
            gold_scores[r.annotator_id].append(score_gold(r.ranks, specs[r.prompt_id]))
    gold_counts = {
        a: PairCounts(sum(s.satisfied for s in ss), sum(s.applicable for s in ss)) for a, ss in gold_scores.items()
    }
    flags = flag_annotators(gold_scores, gold_threshold, gold_min_items)
    flag_of = {f.annotator_id: f for f in flags}

    trust = annotator_trust(records, gold_counts)
    fast = time_outliers(records, max_words_per_second=max_words_per_second)
    weights = ranking_weights(records, trust, (o.ranking_id for o in fast))

    by_ann: dict[Id, list[RankingRecord]] = defaultdict(list)
    for r in records:
        by_ann[r.annotator_id].append(r)
    fast_by_ann: dict[Id, int] = defaultdict(int)
    for o in fast:
        fast_by_ann[o.annotator_id] += 1

    annotators = []
    for ann, recs in by_ann.items():
        t = trust[ann]
        lo, hi = t.ci
        pb = position_bias(recs)
        flag = flag_of.get(ann)
        annotators.append({
            "id": ann,
            "is_ai": all(r.is_ai for r in recs),
            "rankings": len(recs),
            "median_seconds": median_seconds(recs),
            "trust": t.agreement,
            "trust_ci_low": lo,
            "trust_ci_high": hi,
            "weight": t.weight,
            "gold_accuracy": flag.accuracy if flag else None,
            "gold_items": flag.n_items if flag else 0,
            "gold_flagged": bool(flag and flag.flagged),
            "position_bias": pb.rate,
            "position_bias_p": pb.p_value,
            "position_bias_detected": pb.detected(bias_alpha),
            "length_rank_corr": length_rank_correlation(recs),
            "too_fast": fast_by_ann.get(ann, 0),
        })

    humans = [r for r in regular if not r.is_ai]
    overall_pb = position_bias(humans)
    bias = {
        "position": {**overall_pb.to_dict(), "detected": overall_pb.detected(bias_alpha)},
        "length_rank_corr": length_rank_correlation(humans),
        "too_fast": [
            {"ranking_id": o.ranking_id, "annotator_id": o.annotator_id, "seconds": o.seconds, "reason": o.reason}
            for o in fast
        ],
    }
    return QualityReport(
        agreement=project_agreement(regular),
        agreement_by_pair=agreement_by_pair(regular),
        agreement_by_day=agreement_by_day(regular),
        annotators=annotators,
        leaderboard=leaderboard(regular, weights, n_bootstrap=n_bootstrap, seed=seed),
        bias=bias,
        gold_flags=flags,
        ranking_weights=weights,
    )
