"""Active selection: the selection policy that orders the next prompts by reward-model uncertainty
instead of at random. `prompt_uncertainty` is a prompt's priority and `prompt_priorities` maps it over
prompts; the stored priorities (app.quality.scoring, which the claim orders slots by) and the loop's
"uncertain" tier (app.loop.service) both come from here.

Two scores per prompt, both over the pairs of its candidate completions, with P(i > j) =
sigmoid((r_i - r_j) / temperature) as the reward model's Bradley-Terry preference:
- `margin_uncertainty` (one reward vector): mean binary entropy of P(i > j); small reward margins
  give high entropy. (`min_margin` is the cruder variant: minus the smallest gap.)
- `ensemble_disagreement` (several reward vectors from an ensemble or MC-dropout): mean over pairs of
  the mutual information H(mean_m P_m) - mean_m H(P_m) (BALD, Houlsby et al. 2011): high when the
  members are each confident but disagree, unlike plain entropy, which also rewards ties.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

import numpy as np

from app.quality.stats.records import Id

K = TypeVar("K", bound=Hashable)


def _pair_probs(rewards: np.ndarray, temperature: float) -> np.ndarray:
    """P(i > j) for every i < j of the last axis (shape (..., n_pairs))."""
    i, j = np.triu_indices(rewards.shape[-1], k=1)
    diff = (rewards[..., i] - rewards[..., j]) / temperature
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(diff, -50, 50))), dtype=float)


def _entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return np.asarray(-(q * np.log(q) + (1 - q) * np.log(1 - q)), dtype=float)


def margin_uncertainty(
    rewards: Sequence[float], temperature: float = 1.0, kind: Literal["entropy", "min_margin"] = "entropy"
) -> float:
    """Uncertainty of one prompt from its candidates' rewards (higher = label it sooner)."""
    r = np.asarray(rewards, dtype=float)
    if r.size < 2:
        return float("-inf")
    if kind == "min_margin":
        return -float(np.min(np.diff(np.sort(r))))
    return float(np.mean(_entropy(_pair_probs(r, temperature))))


def ensemble_disagreement(rewards: Sequence[Sequence[float]], temperature: float = 1.0) -> float:
    """BALD disagreement of one prompt; `rewards` has shape (members, candidates)."""
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 2 or r.shape[1] < 2:
        return float("-inf")
    p = _pair_probs(r, temperature)  # (members, pairs)
    mi = _entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0)
    return float(np.mean(mi))


def prompt_uncertainty(rewards: Sequence[float], members: Sequence[Sequence[float] | None]) -> float:
    """A prompt's priority from its candidates' rewards: the ensemble's disagreement when every candidate
    has member rewards (all of one length), else the margin uncertainty of `rewards`."""
    if members and all(m is not None for m in members) and len({len(m or ()) for m in members}) == 1:
        matrix = [list(col) for col in zip(*[m or () for m in members], strict=True)]  # (members, candidates)
        return ensemble_disagreement(matrix)
    return margin_uncertainty(rewards)


def prompt_priorities(rewards: Mapping[K, Sequence[float]],
                      members: Mapping[K, Sequence[Sequence[float] | None]]) -> dict[K, float]:
    """`prompt_uncertainty` of every prompt with at least two scored candidates (higher = labeled sooner);
    `members` holds each candidate's per-member rewards, or None, aligned with `rewards`."""
    return {p: prompt_uncertainty(r, members.get(p, [])) for p, r in rewards.items() if len(r) >= 2}


def order_by_priority(scores: Mapping[Id, float], limit: int | None = None) -> list[Id]:
    """Prompt ids by decreasing score; equal scores keep the input order (stable, deterministic)."""
    ids = list(scores)
    order = sorted(range(len(ids)), key=lambda k: -scores[ids[k]])
    out = [ids[k] for k in order]
    return out if limit is None else out[:limit]


def select_by_margin(
    rewards: Mapping[Id, Sequence[float]],
    limit: int | None = None,
    temperature: float = 1.0,
    kind: Literal["entropy", "min_margin"] = "entropy",
) -> list[Id]:
    """Prompt ids, most uncertain first, from one reward vector per prompt."""
    return order_by_priority({p: margin_uncertainty(r, temperature, kind) for p, r in rewards.items()}, limit)


def select_by_disagreement(
    rewards: Mapping[Id, Sequence[Sequence[float]]], limit: int | None = None, temperature: float = 1.0
) -> list[Id]:
    """Prompt ids, most disputed first, from (members x candidates) rewards per prompt."""
    return order_by_priority({p: ensemble_disagreement(r, temperature) for p, r in rewards.items()}, limit)
