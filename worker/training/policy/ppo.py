"""PPO for RLHF as in InstructGPT (Ouyang et al. 2022), built on Ziegler et al. (2019) and Stiennon et al. (2020).

Per step: sample responses from the policy; the reward model scores each full response and that score
lands on the final token, while every token pays -beta * KL(policy || reference) (reference = the frozen
starting policy; beta 0.02 by default, fixed or adaptive per Ziegler et al.); responses without EOS within
the length limit pay `missing_eos_penalty`. A value model (initialised from the reward model when given)
provides GAE advantages (gamma 1, lambda 0.95), which are whitened; the policy minimises the clipped
surrogate (0.2) and the value model the clipped value loss, over minibatches and PPO epochs. With
pretraining texts, the PPO-ptx term adds ptx_coef times their language-modelling loss.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from worker.training.activation_checkpointing import (
    enable_activation_checkpointing,
    supports_activation_checkpointing,
)
from worker.training.dropout import disable_dropout
from worker.training.policy.algorithm import Setup
from worker.training.policy.batching import chunks, step_indices
from worker.training.policy.common import clipped_value_loss, gae, masked_whiten
from worker.training.policy.experience import Experience, rollout_metrics
from worker.training.policy.models import ValueModel, build_value_model
from worker.training.policy.onpolicy import PromptSampler, clipped_update, make_kl_controller
from worker.training.policy.rewards import RewardFn
from worker.training.policy.runtime import Runtime
from worker.training.sampling import pad_token_id


class PPO:
    """One PPO step per call of `step`; the value model trains with the policy."""

    def __init__(
        self,
        setup: Setup,
        reward_fn: RewardFn,
        value: ValueModel,
        value_note: str,
    ) -> None:
        config = setup.run.config
        self.sampler = PromptSampler(config, setup.tokenizer, setup.run.prompts or [], reward_fn)
        self.kl = make_kl_controller(config)
        self.value = value
        self.value_note = value_note
        self.ptx_ids: list[list[int]] = []
        ptx_texts: Sequence[str] = setup.run.ptx_texts or []
        if ptx_texts and config.ptx_coef > 0:
            limit = config.max_prompt_tokens + config.max_new_tokens
            self.ptx_ids = [x[:limit] for x in setup.tokenizer(list(ptx_texts))["input_ids"] if len(x) > 1]
        self._returns: torch.Tensor | None = None
        self._old_values: torch.Tensor | None = None
        self._step = 0

    def trained_modules(self) -> tuple[nn.Module, ...]:
        """The value model."""
        return (self.value,)

    def epoch_size(self) -> int:
        """On-policy: the steps are always given."""
        return 0

    def meta(self) -> dict[str, Any]:
        """How the value model was initialised."""
        return {"value_init": self.value_note}

    def state(self) -> dict[str, Any]:
        """The KL controller and the value model's weights."""
        return {"kl_ctl": self.kl.state_dict(), "value_state": self.value.state_dict()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the KL controller and the value model."""
        self.kl.load_state_dict(state["kl_ctl"])
        self.value.load_state_dict(state["value_state"])

    def values(self, exp: Experience, rows: torch.Tensor) -> torch.Tensor:
        """Value estimates V(s_t) for the response tokens of `rows` (state = everything before token t)."""
        v: torch.Tensor = self.value(exp.input_ids[rows], exp.attention_mask[rows])
        return v[:, -exp.width - 1 : -1] * exp.mask[rows]

    def extra_loss(
        self, rt: Runtime, exp: Experience, rows: torch.Tensor, first_micro: bool, global_tokens: float
    ) -> tuple[torch.Tensor | None, dict[str, float]]:
        """vf_coef * clipped value loss (summed over tokens), plus the PPO-ptx term once per minibatch."""
        cfg = rt.config
        assert self._returns is not None and self._old_values is not None
        v = self.values(exp, rows)
        vl, vclip = clipped_value_loss(
            v, self._old_values[rows], self._returns[rows], exp.mask[rows], cfg.cliprange_value
        )
        ntok = float(exp.mask[rows].sum())
        loss = cfg.vf_coef * vl.sum()
        stats = {"value_loss": float(vl.detach().sum()), "value_clip_frac": float(vclip) * ntok}
        if first_micro and self.ptx_ids:
            ptx = self.ptx_loss(rt)
            stats["ptx_loss"] = float(ptx.detach()) * ntok
            # The caller divides by the minibatch's global token count and sums over ranks: scale so the
            # net gradient is ptx_coef * (mean of the ranks' per-token ptx losses).
            loss = loss + cfg.ptx_coef * ptx * global_tokens / rt.world
        return loss, stats

    def ptx_loss(self, rt: Runtime) -> torch.Tensor:
        """Language-modelling loss on a reproducible batch of pretraining/SFT texts."""
        cfg = rt.config
        picks = step_indices(len(self.ptx_ids), cfg.ptx_batch_size, self._step * 997 + rt.rank, cfg.seed)
        seqs = [self.ptx_ids[i] for i in picks]
        width = max(len(s) for s in seqs)
        pad = pad_token_id(rt.tokenizer)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            labels[i, : len(s)] = torch.tensor(s)
        attn = (labels != -100).long()
        out = rt.policy(
            input_ids=ids.to(rt.device), attention_mask=attn.to(rt.device), labels=labels.to(rt.device)
        )
        loss: torch.Tensor = out.loss
        return loss

    def step(self, rt: Runtime, step: int) -> dict[str, float]:
        """Sample, score, GAE, then the clipped PPO update; return the step's metrics."""
        cfg, k = rt.config, self.sampler.k
        self._step = step
        exp = self.sampler.collect(rt, step)
        t0 = time.perf_counter()
        beta = float(self.kl.value)
        rows = exp.input_ids.shape[0]
        with torch.no_grad():
            old_values = []
            for sl in chunks(rows, cfg.micro_batch_size):
                with rt.autocast():
                    old_values.append(self.values(exp, torch.arange(rows, device=rt.device)[sl]).float())
            values = torch.cat(old_values)
            non_score = -beta * exp.kl
            rewards = non_score.clone()
            rewards[torch.arange(rows, device=rt.device), exp.last_index()] += exp.penalized_scores
            if cfg.whiten_rewards:
                rewards = masked_whiten(rewards, exp.mask, shift_mean=False, global_stats=True)
            adv, returns = gae(rewards, values, exp.mask, cfg.gamma, cfg.lam)
            if cfg.advantages_normalized():
                adv = masked_whiten(adv, exp.mask, global_stats=True)
        self._returns, self._old_values = returns, values
        stats = clipped_update(rt, exp, adv, step, k, partial(self.extra_loss, rt))
        train_s = time.perf_counter() - t0
        metrics = rollout_metrics(exp)
        self.kl.update(metrics["kl"], cfg.rollout_batch_size * k)
        metrics.update(stats)
        n_updates = cfg.ppo_epochs * len(chunks(rows * rt.world, cfg.minibatch_size))
        metrics.update(
            {
                "kl_coef": beta,
                "non_score_reward": float((non_score.sum(1)).mean()),
                "value_mean": float((values * exp.mask).sum() / exp.mask.sum().clamp(min=1)),
                "updates": float(n_updates),
                "train_s": train_s,
                "gen_s": exp.gen_seconds,
                "train_tokens_per_s": metrics["gen_tokens"] * cfg.ppo_epochs / max(train_s, 1e-9),
            }
        )
        return metrics


def prepare_ppo(setup: Setup) -> PPO:
    """PPO on the run's prompts, with a value model initialised from the reward model when it loads as one."""
    assert setup.reward_fn is not None  # the registry entry needs a reward; train_policy refuses one without
    run = setup.run
    value, note = build_value_model(run.reward_model_path, run.policy_path)
    disable_dropout(value, attention_rates=False)
    if run.config.gradient_checkpointing and supports_activation_checkpointing(value.backbone):
        enable_activation_checkpointing(value.backbone)
    return PPO(setup, setup.reward_fn, value.to(setup.device), note)
