"""Inter-annotator agreement on prompts ranked by several humans.

Three measures, see docs/quality.md: pairwise agreement rate, Kendall's tau-b and Krippendorff's
alpha (ordinal; Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"). Each is given for
a whole project, per annotator pair and per day. AI rankings never enter these figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date
from itertools import combinations
from typing import Literal

import numpy as np

from app.quality.stats.records import Id, PairCounts, PromptGroup, RankingRecord, Ranks, group_by_prompt, sign

Metric = Literal["nominal", "ordinal", "interval", "ratio"]


def pairwise_agreement(a: Ranks, b: Ranks) -> PairCounts:
    """Count completion pairs both rankings order strictly, and how many they order the same way.

    Only completions present in both rankings are compared. A pair tied by either annotator is
    not counted at all: a tie is "no preference", neither agreement nor disagreement.
    """
    common = [c for c in a if c in b]
    agree = total = 0
    for x, y in combinations(common, 2):
        sa, sb = sign(a[x] - a[y]), sign(b[x] - b[y])
        if sa and sb:
            total += 1
            agree += sa == sb
    return PairCounts(agree, total)


def kendall_tau_b(a: Ranks, b: Ranks) -> float | None:
    """Kendall's tau-b over the completions both rankings contain, ties corrected.

    tau_b = (C - D) / sqrt((n0 - T_a) (n0 - T_b)) with n0 = n(n-1)/2 and T_x the pairs tied in x.
    None when either ranking is all ties (the denominator is zero) or fewer than 2 items are shared.
    """
    common = [c for c in a if c in b]
    n0 = len(common) * (len(common) - 1) // 2
    conc = disc = tied_a = tied_b = 0
    for x, y in combinations(common, 2):
        sa, sb = sign(a[x] - a[y]), sign(b[x] - b[y])
        tied_a += sa == 0
        tied_b += sb == 0
        if sa and sb:
            if sa == sb:
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((n0 - tied_a) * (n0 - tied_b))
    return (conc - disc) / denom if denom > 0 else None


def _delta2(values: np.ndarray, n_v: np.ndarray, metric: Metric) -> np.ndarray:
    """Squared difference function delta^2(c, k) over the sorted distinct values."""
    c, k = np.meshgrid(values, values, indexing="ij")
    if metric == "nominal":
        return np.asarray(c != k, dtype=float)
    if metric == "interval":
        return np.asarray((c - k) ** 2, dtype=float)
    if metric == "ratio":
        s = c + k
        return np.asarray(np.where(s == 0, 0.0, ((c - k) / np.where(s == 0, 1, s)) ** 2), dtype=float)
    # Ordinal: the ranks "between" c and k count by how often they were used (Krippendorff 2011, p. 6).
    cum = np.concatenate([[0.0], np.cumsum(n_v)])
    i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    between = cum[hi + 1] - cum[lo]
    return np.asarray((between - (n_v[i] + n_v[j]) / 2.0) ** 2, dtype=float)


def krippendorff_alpha(units: Mapping[Id, Mapping[Id, float]], metric: Metric = "ordinal") -> float | None:
    """Krippendorff's alpha from the coincidence matrix (Krippendorff 2011).

    `units` maps unit -> {coder: value}; missing values are simply absent. Units with fewer than
    two values are not pairable and are dropped. alpha = 1 - (n - 1) * sum o_ck d_ck / sum n_c n_k d_ck.
    None when no unit is pairable or all pairable values are equal (expected disagreement is 0).
    """
    pairable = [list(u.values()) for u in units.values() if len(u) >= 2]
    if not pairable:
        return None
    values = np.array(sorted({v for u in pairable for v in u}), dtype=float)
    index = {v: i for i, v in enumerate(values.tolist())}
    o = np.zeros((len(values), len(values)))
    for u in pairable:
        counts = np.bincount([index[float(v)] for v in u], minlength=len(values)).astype(float)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(u) - 1)
    n_v = o.sum(axis=1)
    n = n_v.sum()
    d2 = _delta2(values, n_v, metric)
    expected = float((np.outer(n_v, n_v) * d2).sum())
    if expected <= 0:
        return None
    return float(1.0 - (n - 1) * float((o * d2).sum()) / expected)


@dataclass(frozen=True)
class AgreementSummary:
    """Agreement figures over a set of multiply-ranked prompts (None where not computable)."""

    pairwise_agreement: float | None
    kendall_tau_b: float | None
    krippendorff_alpha: float | None
    n_prompts_multi: int
    n_pairs: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "pairwise_agreement": self.pairwise_agreement,
            "kendall_tau_b": self.kendall_tau_b,
            "krippendorff_alpha": self.krippendorff_alpha,
            "n_prompts_multi": self.n_prompts_multi,
            "n_pairs": self.n_pairs,
        }


def _summarise(groups: Iterable[PromptGroup], coders: set[Id] | None = None) -> AgreementSummary:
    """Pool counts and average tau-b over every annotator pair of every prompt in `groups`."""
    counts = PairCounts()
    taus: list[float] = []
    units: dict[Id, dict[Id, float]] = {}
    n_multi = n_pairs = 0
    for g in groups:
        recs = {a: r for a, r in g.by_annotator.items() if coders is None or a in coders}
        if len(recs) < 2:
            continue
        n_multi += 1
        for ra, rb in combinations(recs.values(), 2):
            n_pairs += 1
            counts = counts + pairwise_agreement(ra.ranks, rb.ranks)
            tau = kendall_tau_b(ra.ranks, rb.ranks)
            if tau is not None:
                taus.append(tau)
        # Units are (prompt, completion); ranks are comparable within a prompt only, which is
        # exactly what the coincidence matrix pairs (values within one unit).
        for ann, rec in recs.items():
            for comp, rank in rec.ranks.items():
                units.setdefault((g.prompt_id, comp), {})[ann] = float(rank)
    return AgreementSummary(
        pairwise_agreement=counts.rate,
        kendall_tau_b=float(np.mean(taus)) if taus else None,
        krippendorff_alpha=krippendorff_alpha(units, "ordinal"),
        n_prompts_multi=n_multi,
        n_pairs=n_pairs,
    )


def project_agreement(records: Iterable[RankingRecord]) -> AgreementSummary:
    """Agreement over all human rankings of prompts ranked by at least two humans."""
    return _summarise(group_by_prompt(records).values())


def agreement_by_pair(records: Iterable[RankingRecord]) -> dict[tuple[Id, Id], AgreementSummary]:
    """Agreement for every pair of human annotators that share at least one prompt.

    Keys are (a, b) with a < b by their string form, so each pair appears once.
    """
    groups = list(group_by_prompt(records).values())
    shared: dict[tuple[Id, Id], list[PromptGroup]] = defaultdict(list)
    for g in groups:
        for a, b in combinations(sorted(g.by_annotator, key=str), 2):
            shared[(a, b)].append(g)
    return {pair: _summarise(gs, set(pair)) for pair, gs in sorted(shared.items(), key=lambda kv: str(kv[0]))}


def agreement_by_day(records: Iterable[RankingRecord]) -> dict[date, AgreementSummary]:
    """Agreement per calendar day (UTC date of `created_at`), for drift over time.

    A day's figure uses the rankings created that day only; rankings without a timestamp are
    left out. Prompts whose rankings span days therefore count on no day where they have < 2.
    """
    by_day: dict[date, list[RankingRecord]] = defaultdict(list)
    for r in records:
        if r.created_at is not None and not r.is_ai:
            day = r.created_at.date() if r.created_at.tzinfo is None else r.created_at.astimezone(UTC).date()
            by_day[day].append(r)
    return {d: project_agreement(rs) for d, rs in sorted(by_day.items())}

