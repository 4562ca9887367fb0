"""Model leaderboard: Bradley-Terry over the models (policy versions or uploaded model names) that
produced the ranked completions, from human rankings, with seeded bootstrap confidence intervals.

Scale: Elo-like points, score = 400 * log10(gamma) = 400 / ln 10 * theta, centred so the mean model is 0.
A 400-point gap means 10:1 odds of being preferred; 100 points is about 64 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from app.quality.stats.choice_models import ChoiceData, fit_choice_model
from app.quality.stats.records import Id, RankingRecord, strict_pairs

ELO = 400.0 / np.log(10.0)


@dataclass(frozen=True)
class LeaderboardRow:
    """One model: Elo-like score and its bootstrap percentile interval."""

    name: str
    score: float
    ci_low: float | None
    ci_high: float | None
    n_comparisons: int

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {"name": self.name, "score": self.score, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "n_comparisons": self.n_comparisons}


@dataclass(frozen=True)
class HeadToHead:
    """Model `a` against model `b` on one Bradley-Terry fit: the score difference a - b (Elo-like points)
    with its bootstrap percentile interval, the share of bootstrap refits in which `a` scores higher, and
    the direct pairs (a completion of one ranked strictly above one of the other)."""

    a: str
    b: str
    difference: float
    ci_low: float | None
    ci_high: float | None
    p_a_better: float | None
    a_wins: int
    b_wins: int

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {"a": self.a, "b": self.b, "difference": self.difference, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "p_a_better": self.p_a_better, "a_wins": self.a_wins, "b_wins": self.b_wins}


@dataclass(frozen=True)
class _Fit:
    """One Bradley-Terry fit over models: index by name, log-strengths, bootstrap refits (or None),
    comparisons per model and direct strict wins by (winner, loser) index."""

    idx: dict[str, int]
    theta: np.ndarray
    boots: np.ndarray | None
    counts: np.ndarray
    wins: np.ndarray


def _fit(records: Iterable[RankingRecord], weights: Mapping[Id, float] | None, n_bootstrap: int, seed: int,
         l2: float) -> _Fit | None:
    """Each human ranking with `model_of` becomes the strict pairwise comparisons between completions
    of different models (same-model pairs say nothing about models). The bootstrap resamples whole
    rankings with replacement (their pairs are not independent) and refits."""
    idx: dict[str, int] = {}
    events: list[tuple[int, tuple[int, int], float]] = []
    owner: list[int] = []  # which ranking each event came from
    n_rank = 0
    for rec in records:
        if rec.is_ai or not rec.model_of:
            continue
        w = 1.0 if weights is None else weights.get(rec.ranking_id, 1.0)
        model_of = rec.model_of
        pairs = [(model_of[a], model_of[b]) for a, b in strict_pairs(rec.ranks)
                 if a in model_of and b in model_of and model_of[a] != model_of[b]]
        if not pairs:
            continue
        for win, lose in pairs:
            i, j = idx.setdefault(win, len(idx)), idx.setdefault(lose, len(idx))
            events.append((i, (i, j), w))
            owner.append(n_rank)
        n_rank += 1
    if not events:
        return None
    n_items = len(idx)
    # Many rankings repeat the same model pair: fit on the n x n table of summed weights instead of
    # one event per comparison (same likelihood, far fewer events, so the bootstrap is cheap).
    code = np.array([e[0] * n_items + e[1][1] for e in events])
    base_w = np.array([e[2] for e in events])
    owner_arr = np.array(owner)

    def fit(event_w: np.ndarray, theta0: np.ndarray | None = None) -> np.ndarray:
        table = np.bincount(code, weights=event_w, minlength=n_items * n_items)
        nz = np.flatnonzero(table)
        win, lose = nz // n_items, nz % n_items
        data = ChoiceData(n_items, win, np.stack([win, lose], 1).ravel(), np.repeat(np.arange(len(nz)), 2), table[nz])
        return fit_choice_model(data, l2=l2, theta0=theta0)

    theta = fit(base_w)
    counts = np.bincount(code // n_items, minlength=n_items) + np.bincount(code % n_items, minlength=n_items)
    boots = None
    if n_bootstrap > 0 and n_rank > 1:
        rng = np.random.default_rng(seed)
        boots = np.empty((n_bootstrap, n_items))
        for b in range(n_bootstrap):
            draw = np.bincount(rng.integers(0, n_rank, n_rank), minlength=n_rank).astype(float)
            boots[b] = fit(base_w * draw[owner_arr], theta)
    wins = np.bincount(code, minlength=n_items * n_items).reshape(n_items, n_items)
    return _Fit(idx, theta, boots, counts, wins)


def leaderboard(
    records: Iterable[RankingRecord],
    weights: Mapping[Id, float] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    l2: float = 0.01,
) -> list[LeaderboardRow]:
    """Models sorted by score (best first), with `level` bootstrap percentile intervals (see `_fit`).
    `weights` maps ranking_id -> trust weight."""
    fitted = _fit(records, weights, n_bootstrap, seed, l2)
    if fitted is None:
        return []
    lo = hi = None
    if fitted.boots is not None:
        tail = (1.0 - level) / 2.0 * 100.0
        lo, hi = np.percentile(fitted.boots * ELO, [tail, 100.0 - tail], axis=0)
    rows = [
        LeaderboardRow(
            name=str(name),
            score=float(fitted.theta[i] * ELO),
            ci_low=None if lo is None else float(lo[i]),
            ci_high=None if hi is None else float(hi[i]),
            n_comparisons=int(fitted.counts[i]),
        )
        for name, i in fitted.idx.items()
    ]
    return sorted(rows, key=lambda r: (-r.score, r.name))


def head_to_head(
    records: Iterable[RankingRecord],
    a: str,
    b: str,
    weights: Mapping[Id, float] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    l2: float = 0.01,
) -> HeadToHead | None:
    """Model `a` against `b` on the fit over every model of `records` (indirect evidence through the
    other models counts too), or None when either has no strict comparison with another model. The
    interval is of the difference itself, from the same bootstrap refits: two overlapping per-model
    intervals can still hide a clear difference."""
    fitted = _fit(records, weights, n_bootstrap, seed, l2)
    if fitted is None or a not in fitted.idx or b not in fitted.idx:
        return None
    i, j = fitted.idx[a], fitted.idx[b]
    lo = hi = p_better = None
    if fitted.boots is not None:
        diffs = (fitted.boots[:, i] - fitted.boots[:, j]) * ELO
        tail = (1.0 - level) / 2.0 * 100.0
        lo, hi = (float(x) for x in np.percentile(diffs, [tail, 100.0 - tail]))
        p_better = float(np.mean(diffs > 0))
    return HeadToHead(a, b, float((fitted.theta[i] - fitted.theta[j]) * ELO), lo, hi, p_better,
                      int(fitted.wins[i, j]), int(fitted.wins[j, i]))
