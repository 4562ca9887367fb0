"""Held-out evaluation of a reward model: pairwise accuracy, loss, accuracy by rank gap, calibration,
per-annotator agreement. Metrics are computed from rewards, so any scorer (or a baseline) can be judged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch

from worker.training.groups import RankingGroup
from worker.training.reward.batching import EncodedGroup, pad_rows
from worker.training.reward.loss import weighted_mean_loss
from worker.training.reward.model import RewardModule


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def pairwise_metrics(
    groups: Sequence[RankingGroup], rewards: Sequence[Sequence[float]], n_bins: int = 10
) -> dict[str, Any]:
    """Metrics over all non-tied pairs of `groups` given a reward per completion.

    A pair is correct when the preferred completion scores higher; an exact score tie counts as half.
    Calibration compares the predicted probability σ(r_w − r_l) with the observed accuracy, overall and
    in `n_bins` bins of confidence max(p, 1−p) (expected calibration error over those bins).
    """
    correct = 0.0
    n_pairs = 0
    prob_sum = 0.0
    by_gap: dict[int, list[float]] = defaultdict(list)
    by_annotator: dict[str, list[float]] = defaultdict(list)
    bins = [[0, 0.0, 0.0] for _ in range(n_bins)]  # count, confidence sum, correct-with-that-choice sum
    for g, r in zip(groups, rewards, strict=True):
        for w, lo, gap in g.pairs():
            margin = float(r[w]) - float(r[lo])
            hit = 1.0 if margin > 0 else 0.5 if margin == 0 else 0.0
            p = _sigmoid(margin)
            correct += hit
            prob_sum += p
            n_pairs += 1
            by_gap[gap].append(hit)
            if g.annotator is not None:
                by_annotator[g.annotator].append(hit)
            confidence = max(p, 1.0 - p)
            b = min(int((confidence - 0.5) * 2 * n_bins), n_bins - 1)
            bins[b][0] += 1
            bins[b][1] += confidence
            bins[b][2] += hit
    if n_pairs == 0:
        return {"n_groups": len(groups), "n_pairs": 0, "accuracy": float("nan"), "loss": float("nan")}
    bin_rows = []
    ece = 0.0
    for i, (count, conf_sum, hit_sum) in enumerate(bins):
        if not count:
            continue
        mean_conf, acc = conf_sum / count, hit_sum / count
        ece += count / n_pairs * abs(mean_conf - acc)
        lo = 0.5 + i / (2 * n_bins)
        bin_rows.append({"lo": round(lo, 4), "hi": round(lo + 1 / (2 * n_bins), 4), "n": count,
                         "mean_confidence": mean_conf, "accuracy": acc})
    accuracy = correct / n_pairs
    return {
        "n_groups": len(groups),
        "n_pairs": n_pairs,
        "accuracy": accuracy,
        "loss": weighted_mean_loss(rewards, groups),
        "accuracy_by_gap": {str(k): {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(by_gap.items())},
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
    was_training = module.training
    module.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
    out = [0.0] * len(rows)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and device.type == "cuda" else nullcontext()
    start = 0
    try:
        while start < len(order):
            width = len(rows[order[start]])  # longest of this chunk (sorted descending)
            size = max(1, min(batch_size, token_budget // max(width, 1)))
            chunk = order[start : start + size]
            ids, mask = pad_rows([rows[i] for i in chunk], pad_id)
            with autocast:
                scores = module(ids.to(device), mask.to(device)).float().cpu().tolist()
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
