"""Bradley-Terry and Plackett-Luce strengths fitted by minorisation-maximisation (Hunter 2004).

Both models are "choose one item from a set with probability gamma_i / sum_set gamma": a pairwise
comparison is a choice from a set of two, a ranking is a sequence of choices from the items not yet
placed. One MM engine fits both. A small L2 penalty on the log-strengths theta = log gamma keeps items
that never lose (or never win) finite; the MM surrogate stays separable, and each coordinate of
W_i theta - A_i e^theta - (l2 / 2) theta^2 is maximised exactly by a 1-D Newton solve.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.quality.stats.records import Comparison, Id, Ranks


@dataclass(frozen=True)
class ChoiceData:
    """Choice events in flat arrays: event e chose item `chosen[e]` from the members whose
    `member_event` is e, with weight `weight[e]`."""

    n_items: int
    chosen: np.ndarray
    members: np.ndarray
    member_event: np.ndarray
    weight: np.ndarray

    @staticmethod
    def build(n_items: int, events: Sequence[tuple[int, Sequence[int], float]]) -> ChoiceData:
        """From (chosen, choice set, weight) triples; the chosen item must be in its set."""
        chosen = np.array([e[0] for e in events], dtype=np.int64)
        members = np.array([i for e in events for i in e[1]], dtype=np.int64)
        member_event = np.repeat(np.arange(len(events)), [len(e[1]) for e in events])
        weight = np.array([e[2] for e in events], dtype=float)
        return ChoiceData(n_items, chosen, members, member_event.astype(np.int64), weight)

    def subset(self, event_counts: np.ndarray) -> ChoiceData:
        """The same data with each event's weight multiplied by `event_counts` (for the bootstrap)."""
        return ChoiceData(self.n_items, self.chosen, self.members, self.member_event, self.weight * event_counts)


def _solve_theta(w: np.ndarray, a: np.ndarray, l2: float, start: np.ndarray) -> np.ndarray:
    """Root of g(t) = w - a e^t - l2 t per item (g is decreasing and concave, so Newton from the
    right of the root converges monotonically; steps are clipped so the first one cannot blow up)."""
    if l2 <= 0:
        with np.errstate(divide="ignore"):
            closed = np.log(np.where(a > 0, w, 1.0)) - np.log(np.where(a > 0, a, 1.0))
        # Unregularised items that never win would go to -inf; hold them at a very low strength.
        return np.asarray(np.where(w > 0, closed, -30.0), dtype=float)
    t = start.copy()
    for _ in range(100):
        et = np.exp(t)
        step = (w - a * et - l2 * t) / (a * et + l2)
        step = np.clip(step, -5.0, 5.0)
        t = t + step
        if np.max(np.abs(step)) < 1e-12:
            break
    return t


def fit_choice_model(
    data: ChoiceData,
    l2: float = 0.01,
    max_iter: int = 2000,
    tol: float = 1e-9,
    theta0: np.ndarray | None = None,
) -> np.ndarray:
    """Penalised maximum-likelihood log-strengths, centred to mean 0.

    MM step (Hunter 2004, eq. 3 generalised to choice sets): with gamma = e^theta at the current
    iterate, A_i = sum over events e containing i of w_e / sum_{k in e} gamma_k and W_i = the weighted
    number of events i won; the new theta_i solves W_i - A_i e^theta_i - l2 theta_i = 0.
    """
    n = data.n_items
    theta = np.zeros(n) if theta0 is None else np.asarray(theta0, dtype=float).copy()
    if len(data.chosen) == 0:
        return np.zeros(n)
    wins = np.bincount(data.chosen, weights=data.weight, minlength=n)
    mw = data.weight[data.member_event]
    n_events = len(data.chosen)
    for _ in range(max_iter):
        gamma = np.exp(theta)
        denom = np.bincount(data.member_event, weights=gamma[data.members], minlength=n_events)
        a = np.bincount(data.members, weights=mw / denom[data.member_event], minlength=n)
        new = _solve_theta(wins, a, l2, theta)
        # The likelihood ignores a common shift and the penalty is smallest at mean 0, so the
        # penalised optimum has mean 0: centring only improves the objective, and it removes the
        # slow drift of plain MM along that flat direction (2000 iterations -> tens).
        new = new - new.mean()
        delta = float(np.max(np.abs(new - theta)))
        theta = new
        if delta < tol:
            break
    return np.asarray(theta - theta.mean(), dtype=float)


def _index(items: Iterable[Id]) -> dict[Id, int]:
    idx: dict[Id, int] = {}
    for it in items:
        idx.setdefault(it, len(idx))
    return idx


def bradley_terry(
    comparisons: Iterable[Comparison], items: Iterable[Id] = (), l2: float = 0.01
) -> dict[Id, float]:
    """Bradley-Terry log-strengths (natural log, mean 0) from weighted pairwise comparisons.

    P(i beats j) = 1 / (1 + exp(theta_j - theta_i)). `items` adds items that may have no comparison
    (they get 0, the prior mean).
    """
    comps = [c for c in comparisons if c.winner != c.loser]
    idx = _index([*items, *(x for c in comps for x in (c.winner, c.loser))])
    data = ChoiceData.build(len(idx), [(idx[c.winner], (idx[c.winner], idx[c.loser]), c.weight) for c in comps])
    theta = fit_choice_model(data, l2=l2)
    return {item: float(theta[i]) for item, i in idx.items()}


def plackett_luce_events(ranks: Ranks, idx: Mapping[Id, int], weight: float) -> list[tuple[int, list[int], float]]:
    """One ranking as Plackett-Luce choice stages.

    Ties: every member of a tied group is "chosen" from the same set (its group plus everything
    ranked below), a Breslow-style approximation; a final stage with a single item carries no
    information and is dropped.
    """
    levels = sorted(set(ranks.values()))
    events: list[tuple[int, list[int], float]] = []
    for lv in levels:
        group = [idx[c] for c, r in ranks.items() if r == lv]
        rest = [idx[c] for c, r in ranks.items() if r >= lv]
        if len(rest) < 2:
            continue
        events.extend((g, rest, weight) for g in group)
    return events


def plackett_luce(
    rankings: Sequence[Ranks], weights: Sequence[float] | None = None, l2: float = 0.01
) -> dict[Id, float]:
    """Plackett-Luce log-strengths (natural log, mean 0) from full or partial rankings with ties."""
    ws = list(weights) if weights is not None else [1.0] * len(rankings)
    idx = _index(c for r in rankings for c in r)
    events = [e for r, w in zip(rankings, ws, strict=True) for e in plackett_luce_events(r, idx, w)]
    theta = fit_choice_model(ChoiceData.build(len(idx), events), l2=l2)
    return {item: float(theta[i]) for item, i in idx.items()}
