"""Held-out evaluation of a policy-training run, before and after: what is measured follows the held-out
data the run is given, whichever algorithm trains.

Held-out prompts: mean reward, sequence KL to the reference and response length (and each judge's mean
reward); held-out ranking groups: DPO implicit-reward margin and accuracy; held-out demonstrations: the
SFT loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from worker.training.distributed import all_reduce_sum
from worker.training.groups import RankingGroup
from worker.training.policy.common import per_token_kl
from worker.training.policy.dpo import dpo_evaluate
from worker.training.policy.experience import forward_logprobs
from worker.training.policy.models import reference_mode
from worker.training.policy.rewards import RewardFn
from worker.training.policy.runtime import Runtime
from worker.training.policy.sft import sft_eval_loss
from worker.training.sampling import Prompt, decode_responses, rollout


@torch.no_grad()
def evaluate_policy(rt: Runtime, prompts: Sequence[Prompt], reward_fn: RewardFn | None,
                    judges: Mapping[str, RewardFn] | None = None) -> dict[str, float]:
    """Mean reward (when a reward is known), sequence KL to the reference and length on held-out prompts.

    One sample per prompt with the run's sampling settings and a fixed seed, so before/after compare alike.
    Each judge (another reward model) scores the same samples: `reward_mean@<name>`.
    """
    cfg = rt.config
    judges = dict(judges or {})
    keys = rt.local(range(min(len(prompts), cfg.eval_max_prompts)))  # streams keyed by prompt, not by rank
    local = [prompts[i] for i in keys]
    totals = torch.zeros(4 + len(judges))  # reward sum, kl sum, length sum, count, one reward sum per judge
    if local:
        batch = rollout(
            rt.policy,
            rt.tokenizer,
            local,
            1,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed + 99_991,
            prompt_keys=keys,
            batch_size=cfg.generation_batch_size,
            max_prompt_tokens=cfg.max_prompt_tokens,
            use_chat_template=cfg.use_chat_template,
        )
        logp = forward_logprobs(rt, rt.policy, batch)
        with reference_mode(rt.policy, rt.ref) as ref:
            ref_logp = forward_logprobs(rt, ref, batch)
        kl = (per_token_kl(logp, ref_logp, "k1") * batch.response_mask).sum(1)
        texts = decode_responses(rt.tokenizer, batch)
        reward = torch.zeros(len(local))
        if reward_fn is not None:
            reward = torch.as_tensor(reward_fn(local, texts), dtype=torch.float32)
        judged = [torch.as_tensor(judge(local, texts), dtype=torch.float32).sum().cpu() for judge in judges.values()]
        totals += torch.stack(
            [
                reward.sum().cpu(),
                kl.sum().cpu(),
                batch.response_mask.sum().float().cpu(),
                torch.tensor(float(len(local))),
                *judged,
            ]
        )
    totals = all_reduce_sum(totals)
    n = float(totals[3].clamp(min=1))
    out = {"kl": float(totals[1]) / n, "response_length": float(totals[2]) / n, "prompts": float(totals[3])}
    if reward_fn is not None:
        out["reward_mean"] = float(totals[0]) / n
    for i, name in enumerate(judges):
        out[f"reward_mean@{name}"] = float(totals[4 + i]) / n
    return out


@dataclass(frozen=True)
class HeldOut:
    """The held-out data of a run (any part may be empty) and the rewards that score sampled answers."""

    prompts: Sequence[Prompt] | None = None
    reward_fn: RewardFn | None = None
    groups: Sequence[RankingGroup] | None = None
    sft_examples: list[tuple[list[int], list[int]]] | None = None  # encoded demonstrations
    judges: Mapping[str, RewardFn] = field(default_factory=dict)


def evaluate_heldout(rt: Runtime, held: HeldOut) -> dict[str, float]:
    """Every measurement the held-out data allows, in one dict (DPO's keys prefixed `dpo_`)."""
    out: dict[str, float] = {}
    if held.prompts:
        out.update(evaluate_policy(rt, held.prompts, held.reward_fn, held.judges))
    if held.groups:
        out.update({f"dpo_{k}": v for k, v in dpo_evaluate(rt, held.groups).items()})
    if held.sft_examples:
        out["sft_loss"] = sft_eval_loss(rt, held.sft_examples)
    return out
