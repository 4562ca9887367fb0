"""Shared policy-training math: masked statistics, log-probs, KL, GAE, clipped losses, RLOO, DPO, KL control.

Everything here works on plain tensors (no model, no tokenizer) so it can be checked against hand-computed
values. Response tensors are laid out as (batch, response_len) with a 0/1 mask marking real response tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worker.training.distributed import all_reduce_sum


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of `x` where `mask` is 1."""
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is 1 (0 when the mask is empty)."""
    if dim is None:
        return masked_sum(x, mask) / mask.sum().clamp(min=1)
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp(min=1)


def masked_mean_var(
    x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True, global_stats: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the masked entries; with `global_stats` they are pooled over all DDP ranks."""
    mask = mask.to(x.dtype)
    stats = torch.stack([masked_sum(x, mask), masked_sum(x * x, mask), mask.sum()])
    if global_stats:
        stats = all_reduce_sum(stats)
    total, total_sq, n = stats[0], stats[1], stats[2].clamp(min=1)
    mean = total / n
    var = (total_sq / n - mean * mean).clamp(min=0)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return mean, var


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    global_stats: bool = False,
) -> torch.Tensor:
    """Normalise the masked entries of `x` to zero mean and unit (unbiased) variance; masked-out entries become 0.

    With `shift_mean=False` the original mean is added back (used for rewards, whose sign carries meaning).
    """
    mean, var = masked_mean_var(x, mask, unbiased=True, global_stats=global_stats)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label under `logits` (..., vocab), computed in float32 for stability."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution given by `logits` (..., vocab), in nats."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) on sampled tokens.

    k1 = log pi - log pi_ref (unbiased, can be negative; what InstructGPT folds into the reward);
    k3 = (r - 1) - log r with r = pi_ref / pi (unbiased and always >= 0; Schulman's "approximating KL").
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (use 'k1' or 'k3')")


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded response tokens.

    Values and rewards past the end of a response are zeroed, so the bootstrap after the last real
    token is 0 (the episode ends there). Returns (advantages, returns) with returns = advantages + values.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    length = rewards.shape[-1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(length)):
        next_value = values[..., t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        last = delta + gamma * lam * last
        adv[..., t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


@dataclass
class PolicyLoss:
    """Clipped-surrogate loss terms: the per-token loss plus diagnostics (detached)."""

    per_token: torch.Tensor
    clip_frac: torch.Tensor
    approx_kl: torch.Tensor


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> PolicyLoss:
    """PPO clipped surrogate (Schulman et al. 2017), per token: max(-A r, -A clip(r, 1-e, 1+e)).

    The caller reduces `per_token` (so it can normalise by a global token count under DDP).
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    loss1 = -advantages * ratio
    loss2 = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    per_token = torch.maximum(loss1, loss2)
    with torch.no_grad():
        clip_frac = masked_mean((loss2 > loss1).float(), mask)
        approx_kl = masked_mean(0.5 * log_ratio.pow(2), mask)
    return PolicyLoss(per_token=per_token * mask, clip_frac=clip_frac, approx_kl=approx_kl)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped value loss per token: 0.5 * max((v - R)^2, (clip(v, v_old +- e) - R)^2); and clip fraction."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    loss1 = (values - returns).pow(2)
    loss2 = (clipped - returns).pow(2)
    per_token = 0.5 * torch.maximum(loss1, loss2) * mask
    with torch.no_grad():
        clip_frac = masked_mean((loss2 > loss1).float(), mask)
    return per_token, clip_frac


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages (Ahmadian et al. 2024): r_i - mean_{j != i} r_j within each group.

    `rewards` is flat with the k samples of each prompt adjacent: [p0s0, p0s1, ..., p1s0, ...].
    """
    if k < 2:
        raise ValueError("RLOO needs k >= 2 samples per prompt")
    if rewards.numel() % k:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of k={k}")
    grouped = rewards.view(-1, k)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).view(-1)


@dataclass
class DPOLoss:
    """Per-pair DPO losses with the implicit rewards beta * (log pi - log pi_ref) of each side."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> DPOLoss:
    """DPO (Rafailov et al. 2023): -log sigmoid(beta * [(log pi_c - log ref_c) - (log pi_r - log ref_r)])."""
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    return DPOLoss(
        losses=-F.logsigmoid(chosen - rejected),
        chosen_rewards=chosen.detach(),
        rejected_rewards=rejected.detach(),
    )


def ranking_pairs(ranks: Sequence[int]) -> list[tuple[int, int]]:
    """All (better, worse) index pairs of one ranking; rank 1 is best and equal ranks (ties) make no pair."""
    return [(i, j) for i in range(len(ranks)) for j in range(len(ranks)) if ranks[i] < ranks[j]]


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, float]:
        """Serialisable state for resume."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore from `state_dict`."""
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Adaptive KL coefficient of Ziegler et al. 2019 (sec. 2.2): a proportional controller toward a target KL.

    e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n_steps / horizon).
    """

    def __init__(self, kl_coef: float, target: float, horizon: float) -> None:
        super().__init__(kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move beta up when the measured KL is above target, down when below."""
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
