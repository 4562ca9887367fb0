"""Model leaderboard: Bradley-Terry over the models (policy versions or uploaded model names) that
produced the ranked completions, from human rankings, with seeded bootstrap confidence intervals.

Scale: Elo-like points, score = 400 * log10(gamma) = 400 / ln 10 * theta, centred so the mean model is 0.
A 400-point gap means 10:1 odds of being preferred; 100 points is about 64 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from app.quality.choice_models import ChoiceData, fit_choice_model
from app.quality.records import Id, RankingRecord, strict_pairs

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


def leaderboard(
    records: Iterable[RankingRecord],
    weights: Mapping[Id, float] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.95,
    l2: float = 0.01,
) -> list[LeaderboardRow]:
    """Models sorted by score (best first).

    Each human ranking with `model_of` becomes the strict pairwise comparisons between completions
    of different models (same-model pairs say nothing about models). The bootstrap resamples whole
    rankings with replacement (their pairs are not independent), refits, and takes percentiles.
    `weights` maps ranking_id -> trust weight.
    """
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
        return []
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
    lo = hi = None
    if n_bootstrap > 0 and n_rank > 1:
        rng = np.random.default_rng(seed)
        boots = np.empty((n_bootstrap, n_items))
        for b in range(n_bootstrap):
            draw = np.bincount(rng.integers(0, n_rank, n_rank), minlength=n_rank).astype(float)
            boots[b] = fit(base_w * draw[owner_arr], theta)
        tail = (1.0 - level) / 2.0 * 100.0
        lo, hi = np.percentile(boots * ELO, [tail, 100.0 - tail], axis=0)
    rows = [
        LeaderboardRow(
            name=str(name),
            score=float(theta[i] * ELO),
            ci_low=None if lo is None else float(lo[i]),
            ci_high=None if hi is None else float(hi[i]),
            n_comparisons=int(counts[i]),
        )
        for name, i in idx.items()
    ]
    return sorted(rows, key=lambda r: (-r.score, r.name))
