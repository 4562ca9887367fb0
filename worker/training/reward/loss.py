"""The InstructGPT K-wise reward-model loss.

For a prompt x with K ranked completions, Ouyang et al. (2022, eq. 1) minimise
    loss(θ) = -1/C(K,2) · E_{(x, y_w, y_l)} [ log σ(r_θ(x, y_w) − r_θ(x, y_l)) ]
over all pairs of one prompt kept in one batch element. Here ties are skipped, so the normalisation is
1/(number of non-tied pairs) (equal to 1/C(K,2) without ties); groups are then averaged with their
weights (annotator trust). A small centering term c · mean(r²) keeps rewards near zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from worker.training.groups import RankingGroup


def kwise_loss_sum(rewards: torch.Tensor, win: torch.Tensor, lose: torch.Tensor, pair_coef: torch.Tensor) -> torch.Tensor:
    """Σ_pairs coef · −log σ(r_w − r_l): the weight-summed group losses of a micro-batch.

    `rewards` is [rows] or, for an ensemble, [rows, heads] with `pair_coef` [pairs, heads] (each member's
    coefficients, already divided by the number of heads).

    Divide by the total group weight of the optimizer batch to get the weighted mean over groups;
    summing first lets micro-batches and ranks accumulate exactly.
    """
    if win.numel() == 0:
        return rewards.sum() * 0.0
    margins = rewards[win].float() - rewards[lose].float()
    return (pair_coef * -F.logsigmoid(margins)).sum()


def group_losses(
    rewards: Sequence[Sequence[float]] | Sequence[torch.Tensor],
    groups: Sequence[RankingGroup],
    rank_gap_weighting: bool = False,
) -> list[float | None]:
    """Per-group K-wise loss from already computed rewards (None for a group with only ties)."""
    out: list[float | None] = []
    for r, g in zip(rewards, groups, strict=True):
        pairs = g.pairs()
        if not pairs:
            out.append(None)
            continue
        r_t = torch.as_tensor(r, dtype=torch.float64)
        w = torch.tensor([p[0] for p in pairs])
        lo = torch.tensor([p[1] for p in pairs])
        gaps = torch.tensor([float(p[2]) for p in pairs], dtype=torch.float64)
        norm = gaps / gaps.sum() if rank_gap_weighting else torch.full_like(gaps, 1.0 / len(pairs))
        out.append(float((norm * -F.logsigmoid(r_t[w] - r_t[lo])).sum()))
    return out


def weighted_mean_loss(
    rewards: Sequence[Sequence[float]] | Sequence[torch.Tensor],
    groups: Sequence[RankingGroup],
    rank_gap_weighting: bool = False,
) -> float:
    """Group losses averaged with the groups' weights (groups with only ties are skipped)."""
    losses = group_losses(rewards, groups, rank_gap_weighting)
    num = sum(g.weight * loss for loss, g in zip(losses, groups, strict=True) if loss is not None)
    den = sum(g.weight for loss, g in zip(losses, groups, strict=True) if loss is not None)
    return num / den if den > 0 else float("nan")
