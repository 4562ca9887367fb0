"""Held-out evaluation of a reward model: pairwise accuracy with a 95 % interval, loss, accuracy by rank gap
and by length difference, calibration, per-annotator agreement, and a length-only baseline beside it.
Metrics are computed from rewards, so any scorer (or a baseline) can be judged.

Rules: a pair is correct when the preferred completion scores higher, an exact tie counts as half; pairs
whose two completions are the same text are excluded (no scorer can order them; they are counted). The
interval treats a prompt's pairs as one cluster (pairs of one ranking share a prompt and are not
independent): accuracy ± 1.96 x the cluster-robust standard error; the Wilson interval over pairs is
reported beside it. The length baseline scores a completion by its length in characters (longer wins).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from worker.training.groups import RankingGroup
from worker.training.reward.batching import EncodedGroup, pad_rows
from worker.training.reward.loss import weighted_mean_loss
from worker.training.reward.model import RewardModule

Z95 = 1.959964

# Bins of the relative length difference (len_chosen - len_rejected) / len_longer, in characters.
LENGTH_BINS = ("chosen shorter by >50%", "chosen shorter by 10-50%", "within 10%", "chosen longer by 10-50%",
               "chosen longer by >50%")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _hit(margin: float) -> float:
    return 1.0 if margin > 0 else 0.5 if margin == 0 else 0.0


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion (`successes` may be fractional: ties count half)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def clustered_interval(clusters: Sequence[tuple[float, int]], z: float = Z95) -> tuple[float, float]:
    """Interval for a ratio of sums over clusters (hits, pairs): the estimate ± z x cluster-robust std error.

    With fewer than two clusters it falls back to the Wilson interval over the pooled pairs."""
    hits = sum(c for c, _ in clusters)
    n = sum(m for _, m in clusters)
    k = len(clusters)
    if n == 0:
        return (float("nan"), float("nan"))
    if k < 2:
        return wilson_interval(hits, n, z)
    acc = hits / n
    var = k / (k - 1) * sum((c - acc * m) ** 2 for c, m in clusters) / (n * n)
    half = z * math.sqrt(var)
    return (max(0.0, acc - half), min(1.0, acc + half))


def _accuracy_block(per_cluster: dict[str, list[float]]) -> dict[str, Any]:
    clusters = [(sum(v), len(v)) for v in per_cluster.values() if v]
    hits, n = sum(c for c, _ in clusters), sum(m for _, m in clusters)
    lo, hi = clustered_interval(clusters)
    wlo, whi = wilson_interval(hits, n)
    return {"accuracy": hits / n if n else float("nan"), "ci95": [lo, hi], "ci95_wilson": [wlo, whi], "n_pairs": n}


def calibrated_loss(groups: Sequence[RankingGroup], rewards: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(loss, scale): the K-wise loss after the one reward scale s >= 0 that minimises it, and that s.

    The plain loss grows when a model gets more confident, even while it orders more pairs correctly; on a
    small, noisy validation set that growth dominates and would select an untrained model. Fitting one scale
    (temperature scaling) measures how well the rewards order the pairs, independent of their spread, and is
    still a smooth proper score (unlike accuracy on a few dozen pairs)."""
    margins: list[float] = []
    coefs: list[float] = []
    total = 0.0
    for g, r in zip(groups, rewards, strict=True):
        pairs = g.pairs()
        if not pairs:
            continue
        total += g.weight
        for w, lo, _ in pairs:
            margins.append(float(r[w]) - float(r[lo]))
            coefs.append(g.weight / len(pairs))
    if not margins or total <= 0:
        return float("nan"), float("nan")
    m = np.asarray(margins)
    c = np.asarray(coefs) / total

    def loss(scale: float) -> float:
        return float((c * np.logaddexp(0.0, -scale * m)).sum())

    grid = [0.0, *np.logspace(-3, 3, 61).tolist()]
    values = [loss(x) for x in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(40):  # golden-section refinement between the grid neighbours (the loss is convex in s)
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
    refined = (lo + hi) / 2
    if loss(refined) <= values[i]:
        return loss(refined), refined
    return values[i], grid[i]


def length_bin(chosen: str, rejected: str) -> str:
    """The LENGTH_BINS label of a pair."""
    d = (len(chosen) - len(rejected)) / max(len(chosen), len(rejected), 1)
    if abs(d) <= 0.1:
        return LENGTH_BINS[2]
    if d < 0:
        return LENGTH_BINS[0] if d < -0.5 else LENGTH_BINS[1]
    return LENGTH_BINS[4] if d > 0.5 else LENGTH_BINS[3]


def pairwise_metrics(
    groups: Sequence[RankingGroup], rewards: Sequence[Sequence[float]], n_bins: int = 10
) -> dict[str, Any]:
    """Metrics over all non-tied, non-identical pairs of `groups` given a reward per completion.

    A pair is correct when the preferred completion scores higher; an exact score tie counts as half.
    Calibration compares the predicted probability σ(r_w − r_l) with the observed accuracy, overall and
    in `n_bins` bins of confidence max(p, 1−p) (expected calibration error over those bins).
    """
    n_pairs = n_identical = n_ties = 0
    prob_sum = 0.0
    by_gap: dict[int, list[float]] = defaultdict(list)
    by_length: dict[str, list[float]] = defaultdict(list)
    by_annotator: dict[str, list[float]] = defaultdict(list)
    per_prompt: dict[str, list[float]] = defaultdict(list)
    length_per_prompt: dict[str, list[float]] = defaultdict(list)
    bins = [[0, 0.0, 0.0] for _ in range(n_bins)]  # count, confidence sum, correct-with-that-choice sum
    for g, r in zip(groups, rewards, strict=True):
        key = g.prompt_key()
        for w, lo, gap in g.pairs():
            chosen, rejected = g.completions[w], g.completions[lo]
            if chosen == rejected:
                n_identical += 1
                continue
            margin = float(r[w]) - float(r[lo])
            hit = _hit(margin)
            n_ties += margin == 0
            p = _sigmoid(margin)
            prob_sum += p
            n_pairs += 1
            per_prompt[key].append(hit)
            length_per_prompt[key].append(_hit(len(chosen) - len(rejected)))
            by_gap[gap].append(hit)
            by_length[length_bin(chosen, rejected)].append(hit)
            if g.annotator is not None:
                by_annotator[g.annotator].append(hit)
            confidence = max(p, 1.0 - p)
            b = min(int((confidence - 0.5) * 2 * n_bins), n_bins - 1)
            bins[b][0] += 1
            bins[b][1] += confidence
            bins[b][2] += hit
    if n_pairs == 0:
        return {"n_groups": len(groups), "n_pairs": 0, "n_identical_excluded": n_identical,
                "accuracy": float("nan"), "loss": float("nan")}
    bin_rows = []
    ece = 0.0
    for i, (count, conf_sum, hit_sum) in enumerate(bins):
        if not count:
            continue
        mean_conf, acc = conf_sum / count, hit_sum / count
        ece += count / n_pairs * abs(mean_conf - acc)
        bin_lo = 0.5 + i / (2 * n_bins)
        bin_rows.append({"lo": round(bin_lo, 4), "hi": round(bin_lo + 1 / (2 * n_bins), 4), "n": count,
                         "mean_confidence": mean_conf, "accuracy": acc})
    overall = _accuracy_block(per_prompt)
    calibrated = calibrated_loss(groups, rewards)
    baseline = _accuracy_block(length_per_prompt)
    accuracy = overall["accuracy"]
    return {
        "n_groups": len(groups),
        "n_prompts": len(per_prompt),
        "n_pairs": n_pairs,
        "n_identical_excluded": n_identical,
        "n_ties": n_ties,
        "accuracy": accuracy,
        "accuracy_ci95": overall["ci95"],
        "accuracy_ci95_wilson": overall["ci95_wilson"],
        "loss": weighted_mean_loss(rewards, groups),
        "calibrated_loss": calibrated[0],
        "calibration_scale": calibrated[1],
        "length_baseline": {"accuracy": baseline["accuracy"], "accuracy_ci95": baseline["ci95"]},
        "accuracy_by_gap": {str(k): {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(by_gap.items())},
        "accuracy_by_length_difference": {
            label: {"n": len(by_length[label]), "accuracy": sum(by_length[label]) / len(by_length[label])}
            for label in LENGTH_BINS if by_length[label]
        },
        "calibration": {"mean_probability": prob_sum / n_pairs, "accuracy": accuracy, "ece": ece, "bins": bin_rows},
        "annotator_agreement": {
            a: {"n_pairs": len(v), "agreement": sum(v) / len(v)} for a, v in sorted(by_annotator.items())
        },
    }


@torch.no_grad()
def score_rows(
    module: RewardModule,
    rows: Sequence[list[int]],
    pad_id: int,
    device: torch.device,
    batch_size: int = 32,
    token_budget: int = 65536,
    bf16: bool = True,
) -> list[float]:
    """Rewards for token-id rows, batched by length (sorted so little padding), in input order."""
    return [float(r) for r in _score(module, rows, pad_id, device, batch_size, token_budget, bf16, members=False)]


def score_member_rows(
    module: RewardModule,
    rows: Sequence[list[int]],
    pad_id: int,
    device: torch.device,
    batch_size: int = 32,
    token_budget: int = 65536,
    bf16: bool = True,
) -> list[list[float]]:
    """Every ensemble member's reward for token-id rows ([rows][heads]), in input order."""
    return [list(r) for r in _score(module, rows, pad_id, device, batch_size, token_budget, bf16, members=True)]


@torch.no_grad()
def _score(module: RewardModule, rows: Sequence[list[int]], pad_id: int, device: torch.device, batch_size: int,
           token_budget: int, bf16: bool, members: bool) -> list[Any]:
    was_training = module.training
    module.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
    out: list[Any] = [0.0] * len(rows)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda" else nullcontext()
    start = 0
    try:
        while start < len(order):
            width = len(rows[order[start]])  # longest of this chunk (sorted descending)
            size = max(1, min(batch_size, token_budget // max(width, 1)))
            chunk = order[start : start + size]
            ids, mask = pad_rows([rows[i] for i in chunk], pad_id)
            with autocast:
                scores = module(ids.to(device), mask.to(device), members=members).float().cpu().tolist()
            for i, s in zip(chunk, scores, strict=True):
                out[i] = s
            start += size
    finally:
        module.train(was_training)
    return out


def score_encoded_groups(
    module: RewardModule, groups: Sequence[EncodedGroup], pad_id: int, device: torch.device, **kwargs: Any
) -> list[list[float]]:
    """Rewards per completion for encoded groups (one flat scoring pass, regrouped)."""
    rows = [r for g in groups for r in g.input_ids]
    flat = score_rows(module, rows, pad_id, device, **kwargs)
    out, pos = [], 0
    for g in groups:
        out.append(flat[pos : pos + len(g.input_ids)])
        pos += len(g.input_ids)
    return out
