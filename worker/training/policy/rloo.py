"""REINFORCE Leave-One-Out (Ahmadian et al. 2024): k samples per prompt, no value model.

The sequence reward is the reward-model score minus beta times the sequence KL to the reference (KL in the
reward, as in the paper); each sample's baseline is the mean reward of the other k - 1 samples of its
prompt. With one epoch and one minibatch the update is exactly REINFORCE (importance ratio 1); more epochs
or minibatches use the PPO clipped surrogate around the sampling policy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from worker.training.policy.common import all_reduce_sum, clipped_policy_loss, masked_whiten, rloo_advantages
from worker.training.policy.experience import Experience, collect, rollout_metrics, set_kl
from worker.training.policy.runtime import (
    RewardFn,
    Runtime,
    chunks,
    global_minibatches,
    response_forward,
    step_indices,
)
from worker.training.sampling import Prompt, encode_prompts


class PolicyGradientBase:
    """What RLOO and PPO share: prompts encoded once, a reproducible prompt order, the minibatch update loop."""

    def __init__(self, rt: Runtime, prompts: Sequence[Prompt], reward_fn: RewardFn) -> None:
        if not prompts:
            raise ValueError(f"{rt.config.algorithm} needs training prompts")
        self.rt = rt
        self.prompts = list(prompts)
        self.reward_fn = reward_fn
        cfg = rt.config
        self.prompt_ids = encode_prompts(
            rt.tokenizer, self.prompts, cfg.max_prompt_tokens, cfg.use_chat_template
        )
        self.k = cfg.samples_per_prompt()

    def step_prompts(self, step: int) -> list[int]:
        """This rank's share of the step's prompts, as indices into the run's prompt list."""
        cfg = self.rt.config
        return self.rt.local(step_indices(len(self.prompts), cfg.rollout_batch_size, step, cfg.seed))

    def sample_seed(self, step: int) -> int:
        """Reproducible sampling seed per (run seed, step); the same on every rank, because each sample's
        stream is keyed by its prompt's index in the run (worker.training.streams), not by its rank."""
        return (self.rt.config.seed * 1_000_003 + step * 1009) % (2**62)

    def collect(self, step: int) -> Experience:
        """Sample this step's experience. In a single on-policy pass (one epoch, one minibatch) the old
        log-probs are the sampling-time ones, which saves a full forward over the batch."""
        idx = self.step_prompts(step)
        rows = len(idx) * self.k
        global_rows = rows * self.rt.world
        single = self.rt.config.ppo_epochs == 1 and (self.rt.config.minibatch_size or global_rows) >= global_rows
        exp = collect(
            self.rt, [self.prompt_ids[i] for i in idx], [self.prompts[i] for i in idx], self.k,
            self.sample_seed(step), self.reward_fn, not single, prompt_keys=idx,
        )
        self.single_pass = single
        set_kl(
            exp,
            exp.old_logprobs if exp.old_logprobs is not None else exp.batch.logprobs,
            self.rt.config.kl_estimator,
        )
        return exp

    def extra_loss(
        self, exp: Experience, rows: torch.Tensor, first_micro: bool, global_tokens: float
    ) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Additional summed loss terms for these rows (PPO adds its value loss); none for RLOO."""
        return None, {}

    def update(self, exp: Experience, token_adv: torch.Tensor, step: int) -> dict[str, float]:
        """PPO-style epochs x minibatches x micro-batches of the clipped surrogate; token-mean normalised globally."""
        rt, cfg = self.rt, self.rt.config
        rows = exp.input_ids.shape[0]
        agg = torch.zeros(4)  # policy loss, clip frac, approx kl, entropy (token-weighted sums)
        n_tok = torch.zeros(())
        extra: dict[str, float] = {}
        gen = torch.Generator().manual_seed(cfg.seed * 31 + step)  # the same permutation on every rank
        for _epoch in range(cfg.ppo_epochs):
            shuffle = cfg.ppo_epochs > 1 or cfg.minibatch_size
            perm = torch.randperm(rows * rt.world, generator=gen) if shuffle else None
            for idx in global_minibatches(rows, self.k, rt.rank, rt.world, cfg.minibatch_size, perm):
                global_tokens = all_reduce_sum(exp.mask[idx.to(exp.mask.device)].sum().cpu()).clamp(min=1)
                # A rank whose share is empty still joins the gradient sum in optimizer_step.
                for n_micro, micro in enumerate(chunks(len(idx), cfg.micro_batch_size)):
                    j = idx[micro].to(rt.device)
                    with rt.autocast():
                        logp, ent = response_forward(
                            rt.policy,
                            exp.input_ids[j],
                            exp.attention_mask[j],
                            exp.width,
                            cfg.temperature,
                            True,
                        )
                    m = exp.mask[j]
                    old = exp.old_logprobs[j] if exp.old_logprobs is not None else logp.detach()
                    pl = clipped_policy_loss(logp, old, token_adv[j], m, cfg.cliprange)
                    loss = pl.per_token.sum()
                    with rt.autocast():
                        more, more_stats = self.extra_loss(exp, j, n_micro == 0, float(global_tokens))
                    if more is not None:
                        loss = loss + more
                    (loss / global_tokens.to(logp.device)).backward()
                    for key, val in more_stats.items():
                        extra[key] = extra.get(key, 0.0) + val
                    t = m.sum().cpu()
                    assert ent is not None
                    agg += torch.stack(
                        [
                            pl.per_token.detach().sum().cpu(),
                            pl.clip_frac.cpu() * t,
                            pl.approx_kl.cpu() * t,
                            (ent * m).sum().cpu(),
                        ]
                    )
                    n_tok += t
                rt.optimizer_step()
        total = all_reduce_sum(n_tok).clamp(min=1)
        agg = all_reduce_sum(agg) / total
        out = {
            "policy_loss": float(agg[0]),
            "clip_frac": float(agg[1]),
            "approx_kl": float(agg[2]),
            "entropy": float(agg[3]),
        }
        for key, val in extra.items():
            out[key] = float(all_reduce_sum(torch.tensor(val)) / total)
        return out


class RLOO(PolicyGradientBase):
    """One RLOO step: sample k per prompt, leave-one-out advantages, policy-gradient update(s)."""

    def step(self, step: int) -> dict[str, float]:
        """Run one step; return its metrics."""
        rt, cfg = self.rt, self.rt.config
        exp = self.collect(step)
        t0 = time.perf_counter()
        beta = float(rt.kl_ctl.value)
        seq_reward = exp.penalized_scores - beta * exp.kl.sum(1)
        adv = rloo_advantages(seq_reward, self.k)
        if cfg.advantages_normalized():
            adv = masked_whiten(adv, torch.ones_like(adv), global_stats=True)
        stats = self.update(exp, adv.unsqueeze(1) * exp.mask, step)
        train_s = time.perf_counter() - t0
        metrics = rollout_metrics(exp)
        rt.kl_ctl.update(metrics["kl"], cfg.rollout_batch_size * self.k)
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
