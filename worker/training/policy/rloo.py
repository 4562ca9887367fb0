"""REINFORCE Leave-One-Out (Ahmadian et al. 2024): k samples per prompt, no value model.

The sequence reward is the reward-model score minus beta times the sequence KL to the reference (KL in the
reward, as in the paper); each sample's baseline is the mean reward of the other k - 1 samples of its
prompt. With one epoch and one minibatch the update is exactly REINFORCE (importance ratio 1); more epochs
or minibatches use the PPO clipped surrogate around the sampling policy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from worker.training.policy.algorithm import Setup
from worker.training.policy.common import masked_whiten, rloo_advantages
from worker.training.policy.experience import rollout_metrics
from worker.training.policy.onpolicy import PromptSampler, clipped_update, make_kl_controller
from worker.training.policy.rewards import RewardFn
from worker.training.policy.runtime import Runtime


class RLOO:
    """One RLOO step: sample k per prompt, leave-one-out advantages, policy-gradient update(s)."""

    def __init__(self, setup: Setup, reward_fn: RewardFn) -> None:
        config = setup.run.config
        self.sampler = PromptSampler(config, setup.tokenizer, setup.run.prompts or [], reward_fn)
        self.kl = make_kl_controller(config)

    def trained_modules(self) -> tuple[nn.Module, ...]:
        """Only the policy trains."""
        return ()

    def epoch_size(self) -> int:
        """On-policy: the steps are always given."""
        return 0

    def meta(self) -> dict[str, Any]:
        """Nothing to add."""
        return {}

    def state(self) -> dict[str, Any]:
        """The KL controller."""
        return {"kl_ctl": self.kl.state_dict()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the KL controller."""
        self.kl.load_state_dict(state["kl_ctl"])

    def step(self, rt: Runtime, step: int) -> dict[str, float]:
        """Run one step; return its metrics."""
        cfg, k = rt.config, self.sampler.k
        exp = self.sampler.collect(rt, step)
        t0 = time.perf_counter()
        beta = float(self.kl.value)
        seq_reward = exp.penalized_scores - beta * exp.kl.sum(1)
        adv = rloo_advantages(seq_reward, k)
        if cfg.advantages_normalized():
            adv = masked_whiten(adv, torch.ones_like(adv), global_stats=True)
        stats = clipped_update(rt, exp, adv.unsqueeze(1) * exp.mask, step, k)
        train_s = time.perf_counter() - t0
        metrics = rollout_metrics(exp)
        self.kl.update(metrics["kl"], cfg.rollout_batch_size * k)
        metrics.update(stats)
        metrics.update(
            {
                "kl_coef": beta,
                "rloo_reward_mean": float(seq_reward.mean()),
                "train_s": train_s,
                "gen_s": exp.gen_seconds,
                "train_tokens_per_s": metrics["gen_tokens"] * cfg.ppo_epochs / max(train_s, 1e-9),
            }
        )
        return metrics


def prepare_rloo(setup: Setup) -> RLOO:
    """RLOO on the run's prompts against its reward."""
    assert setup.reward_fn is not None  # the registry entry needs a reward; train_policy refuses one without
    return RLOO(setup, setup.reward_fn)
