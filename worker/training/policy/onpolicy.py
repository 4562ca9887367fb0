"""The pieces PPO and RLOO share, as helpers they compose: the prompt sampler, the KL controller, and the
clipped-surrogate update over epochs x minibatches x micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from worker.training.distributed import all_reduce_sum
from worker.training.policy.batching import chunks, global_minibatches, response_forward, step_indices
from worker.training.policy.common import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
)
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.experience import Experience, collect, set_kl
from worker.training.policy.rewards import RewardFn
from worker.training.policy.runtime import Runtime
from worker.training.sampling import Prompt, encode_prompts

# Additional summed loss terms for some rows (PPO's value and ptx losses):
# (experience, rows, first micro-batch of the minibatch, the minibatch's global token count) -> (loss, stats).
ExtraLoss = Callable[[Experience, torch.Tensor, bool, float], tuple[torch.Tensor | None, dict[str, float]]]


def make_kl_controller(config: PolicyTrainConfig) -> FixedKLController:
    """The run's KL coefficient: fixed, or adaptive toward `kl_target` (Ziegler et al.)."""
    if config.kl_controller == "adaptive":
        return AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
    return FixedKLController(config.kl_coef)


class PromptSampler:
    """Prompts encoded once, a reproducible prompt order and sampling seed per step, and experience collection."""

    def __init__(
        self, config: PolicyTrainConfig, tokenizer: Any, prompts: Sequence[Prompt], reward_fn: RewardFn
    ) -> None:
        if not prompts:
            raise ValueError(f"{config.algorithm} needs training prompts")
        self.prompts = list(prompts)
        self.reward_fn = reward_fn
        self.prompt_ids = encode_prompts(
            tokenizer, self.prompts, config.max_prompt_tokens, config.use_chat_template
        )
        self.k = config.samples_per_prompt()

    def step_prompts(self, rt: Runtime, step: int) -> list[int]:
        """This rank's share of the step's prompts, as indices into the run's prompt list."""
        cfg = rt.config
        return rt.local(step_indices(len(self.prompts), cfg.rollout_batch_size, step, cfg.seed))

    @staticmethod
    def sample_seed(config: PolicyTrainConfig, step: int) -> int:
        """Reproducible sampling seed per (run seed, step); the same on every rank, because each sample's
        stream is keyed by its prompt's index in the run (worker.training.streams), not by its rank."""
        return (config.seed * 1_000_003 + step * 1009) % (2**62)

    def collect(self, rt: Runtime, step: int) -> Experience:
        """Sample this step's experience. In a single on-policy pass (one epoch, one minibatch) the old
        log-probs are the sampling-time ones, which saves a full forward over the batch."""
        cfg = rt.config
        idx = self.step_prompts(rt, step)
        global_rows = len(idx) * self.k * rt.world
        single = cfg.ppo_epochs == 1 and (cfg.minibatch_size or global_rows) >= global_rows
        exp = collect(
            rt, [self.prompt_ids[i] for i in idx], [self.prompts[i] for i in idx], self.k,
            self.sample_seed(cfg, step), self.reward_fn, not single, prompt_keys=idx,
        )
        set_kl(exp, exp.old_logprobs if exp.old_logprobs is not None else exp.batch.logprobs, cfg.kl_estimator)
        return exp


@dataclass
class _UpdateStats:
    """Token-weighted sums over an update: policy loss, clip fraction, approx KL, entropy; extra-loss stats."""

    agg: torch.Tensor = field(default_factory=lambda: torch.zeros(4))
    n_tok: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        total = all_reduce_sum(self.n_tok).clamp(min=1)
        agg = all_reduce_sum(self.agg) / total
        out = {
            "policy_loss": float(agg[0]),
            "clip_frac": float(agg[1]),
            "approx_kl": float(agg[2]),
            "entropy": float(agg[3]),
        }
        for key, val in self.extra.items():
            out[key] = float(all_reduce_sum(torch.tensor(val)) / total)
        return out


def _micro_step(
    rt: Runtime, exp: Experience, token_adv: torch.Tensor, j: torch.Tensor, first_micro: bool,
    global_tokens: torch.Tensor, extra_loss: ExtraLoss | None, stats: _UpdateStats,
) -> None:
    """Forward and backward one micro-batch (rows `j`) of a minibatch, accumulating its statistics."""
    cfg = rt.config
    with rt.autocast():
        logp, ent = response_forward(
            rt.policy, exp.input_ids[j], exp.attention_mask[j], exp.width, cfg.temperature, True
        )
    m = exp.mask[j]
    old = exp.old_logprobs[j] if exp.old_logprobs is not None else logp.detach()
    pl = clipped_policy_loss(logp, old, token_adv[j], m, cfg.cliprange)
    loss = pl.per_token.sum()
    if extra_loss is not None:
        with rt.autocast():
            more, more_stats = extra_loss(exp, j, first_micro, float(global_tokens))
        if more is not None:
            loss = loss + more
        for key, val in more_stats.items():
            stats.extra[key] = stats.extra.get(key, 0.0) + val
    (loss / global_tokens.to(logp.device)).backward()
    t = m.sum().cpu()
    assert ent is not None
    stats.agg += torch.stack(
        [pl.per_token.detach().sum().cpu(), pl.clip_frac.cpu() * t, pl.approx_kl.cpu() * t, (ent * m).sum().cpu()]
    )
    stats.n_tok += t


def clipped_update(
    rt: Runtime, exp: Experience, token_adv: torch.Tensor, step: int, k: int, extra_loss: ExtraLoss | None = None
) -> dict[str, float]:
    """PPO-style epochs x minibatches x micro-batches of the clipped surrogate; token-mean normalised globally."""
    cfg = rt.config
    rows = exp.input_ids.shape[0]
    stats = _UpdateStats()
    gen = torch.Generator().manual_seed(cfg.seed * 31 + step)  # the same permutation on every rank
    for _epoch in range(cfg.ppo_epochs):
        shuffle = cfg.ppo_epochs > 1 or cfg.minibatch_size
        perm = torch.randperm(rows * rt.world, generator=gen) if shuffle else None
        for idx in global_minibatches(rows, k, rt.rank, rt.world, cfg.minibatch_size, perm):
            global_tokens = all_reduce_sum(exp.mask[idx.to(exp.mask.device)].sum().cpu()).clamp(min=1)
            # A rank whose share is empty still joins the gradient sum in optimizer_step.
            for n_micro, micro in enumerate(chunks(len(idx), cfg.micro_batch_size)):
                _micro_step(rt, exp, token_adv, idx[micro].to(rt.device), n_micro == 0, global_tokens,
                            extra_loss, stats)
            rt.optimizer_step()
    return stats.summary()
