"""Bias analytics: position bias against the stored shown order, correlation of rank with
completion length, and time-on-task outliers (too fast to have read the completions)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from app.quality.stats.records import Id, RankingRecord


@dataclass(frozen=True)
class PositionBias:
    """How often the first-shown completion was ranked best, against chance."""

    n: int
    first_wins: int
    expected: float | None
    p_value: float | None

    @property
    def rate(self) -> float | None:
        return self.first_wins / self.n if self.n else None

    def detected(self, alpha: float = 0.01) -> bool:
        return self.p_value is not None and self.p_value < alpha

    def to_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "first_wins": self.first_wins, "rate": self.rate,
                "expected": self.expected, "p_value": self.p_value}


def _poisson_binomial_pmf(ps: Sequence[float]) -> np.ndarray:
    """Exact pmf of a sum of independent Bernoullis, grouping equal p into one binomial each."""
    pmf = np.array([1.0])
    values, counts = np.unique(np.round(ps, 12), return_counts=True)
    for p, k in zip(values, counts, strict=True):
        pmf = np.convolve(pmf, stats.binom.pmf(np.arange(k + 1), k, p))
    return pmf


def position_bias(records: Iterable[RankingRecord]) -> PositionBias:
    """Position bias over rankings with a unique best completion and K >= 2 shown.

    Under no bias the first-shown item is the best with probability 1/K. The p-value is two-sided
    and exact: a binomial test when all K are equal (identical to scipy.stats.binomtest), a
    Poisson-binomial one otherwise (sum of the probabilities no larger than the observed one).
    Rankings with a tie for best are skipped: "who won" is not defined.
    """
    ps: list[float] = []
    wins = 0
    for r in records:
        if len(r.shown_order) < 2:
            continue
        best = min(r.ranks.values())
        if sum(v == best for v in r.ranks.values()) != 1:
            continue
        ps.append(1.0 / len(r.shown_order))
        wins += r.ranks[r.shown_order[0]] == best
    if not ps:
        return PositionBias(0, 0, None, None)
    pmf = _poisson_binomial_pmf(ps)
    # the same relative tolerance scipy's binomtest uses for "as or more extreme"
    p_value = float(min(1.0, pmf[pmf <= pmf[wins] * (1 + 1e-7)].sum()))
    return PositionBias(len(ps), wins, float(np.mean(ps)), p_value)


def length_rank_correlation(records: Iterable[RankingRecord]) -> float | None:
    """Mean within-ranking Spearman correlation between rank and length (in words).

    Computed per ranking, so prompts with long answers do not confound it; rank 1 is best, hence
    a *negative* value means longer completions are preferred. Rankings where every length or
    every rank is equal are skipped; None when none is left.
    """
    rhos = []
    for r in records:
        if not r.lengths or len(r.ranks) < 3:
            continue
        items = [c for c in r.ranks if c in r.lengths]
        if len(items) < 3:
            continue
        ranks = np.array([r.ranks[c] for c in items], dtype=float)
        lengths = np.array([r.lengths[c] for c in items], dtype=float)
        if np.ptp(ranks) == 0 or np.ptp(lengths) == 0:
            continue
        rx, ry = stats.rankdata(ranks), stats.rankdata(lengths)
        rhos.append(float(np.corrcoef(rx, ry)[0, 1]))
    return float(np.mean(rhos)) if rhos else None


@dataclass(frozen=True)
class TimeOutlier:
    """A ranking submitted implausibly fast, and why."""

    ranking_id: Id
    annotator_id: Id
    seconds: float
    reason: str


def time_outliers(
    records: Iterable[RankingRecord],
    max_words_per_second: float = 10.0,
    min_seconds: float = 2.0,
    mad_z: float = 3.5,
) -> list[TimeOutlier]:
    """Rankings done too fast to have read the completions.

    Two rules, either flags: (1) reading bound: seconds < max(min_seconds, total words shown /
    `max_words_per_second`); 10 words/s is about twice a fast skim (Rayner et al. 2016 put normal
    reading at 200-400 words/min). (2) robust outlier: the modified z-score of log(seconds),
    0.6745 (x - median) / MAD (Iglewicz & Hoaglin 1993), below -`mad_z` among all timed rankings.
    Log time because task times are right-skewed.
    """
    recs = [r for r in records if r.seconds is not None and r.seconds >= 0]
    logs = np.log(np.array([max(r.seconds or 0.0, 1e-3) for r in recs]))
    med = float(np.median(logs)) if len(logs) else 0.0
    mad = float(np.median(np.abs(logs - med))) if len(logs) else 0.0
    out = []
    for r, lg in zip(recs, logs, strict=True):
        assert r.seconds is not None
        words = sum(r.lengths.values()) if r.lengths else 0
        bound = max(min_seconds, words / max_words_per_second)
        if r.seconds < bound:
            out.append(TimeOutlier(r.ranking_id, r.annotator_id, r.seconds, f"under reading bound {bound:.1f}s"))
        elif mad > 0 and len(recs) >= 5 and 0.6745 * (lg - med) / mad < -mad_z:
            out.append(TimeOutlier(r.ranking_id, r.annotator_id, r.seconds, f"robust z below -{mad_z:.1f}"))
    return out


def median_seconds(records: Iterable[RankingRecord]) -> float | None:
    """Median time on task, None when no ranking was timed."""
    s = [r.seconds for r in records if r.seconds is not None and math.isfinite(r.seconds)]
    return float(np.median(s)) if s else None
