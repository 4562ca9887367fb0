"""Collecting RL experience for PPO and RLOO: sample, score, and compute old/reference log-probs and KL.

Both algorithms call `collect` once per step; it goes through the one shared sampling path
(worker.training.sampling.rollout) so evaluation, the CLI and training sample identically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from worker.training.distributed import all_reduce_sum
from worker.training.policy.batching import chunks, response_forward
from worker.training.policy.common import masked_mean, per_token_kl
from worker.training.policy.models import reference_mode
from worker.training.policy.rewards import RewardFn
from worker.training.policy.runtime import Runtime
from worker.training.sampling import Prompt, Rollout, decode_responses, rollout


@dataclass
class Experience:
    """One step's samples with everything the losses need (rows grouped by prompt, k per prompt)."""

    batch: Rollout
    prompts: list[Prompt]
    texts: list[str]
    scores: torch.Tensor
    penalized_scores: torch.Tensor
    old_logprobs: torch.Tensor | None
    ref_logprobs: torch.Tensor
    kl: torch.Tensor
    mask: torch.Tensor
    gen_seconds: float

    @property
    def input_ids(self) -> torch.Tensor:
        """Prompt + response ids."""
        return self.batch.input_ids

    @property
    def attention_mask(self) -> torch.Tensor:
        """Mask of `input_ids`."""
        return self.batch.attention_mask

    @property
    def width(self) -> int:
        """Response width."""
        return int(self.batch.response_ids.shape[1])

    def last_index(self) -> torch.Tensor:
        """Index of each row's final response token (where the sequence-level score lands)."""
        return (self.mask.sum(1).long() - 1).clamp(min=0)


@torch.no_grad()
def forward_logprobs(rt: Runtime, model: torch.nn.Module, batch: Rollout) -> torch.Tensor:
    """Per-token log-probs of the sampled responses under `model`, in micro-batches."""
    out = []
    width = int(batch.response_ids.shape[1])
    ids, attn = batch.input_ids, batch.attention_mask
    for sl in chunks(ids.shape[0], rt.config.micro_batch_size):
        with rt.autocast():
            logp, _ = response_forward(model, ids[sl], attn[sl], width, rt.config.temperature)
        out.append(logp)
    return torch.cat(out) * batch.response_mask


def collect(
    rt: Runtime,
    prompt_ids: Sequence[Sequence[int]],
    prompts: Sequence[Prompt],
    k: int,
    seed: int,
    reward_fn: RewardFn,
    need_old_logprobs: bool,
    prompt_keys: Sequence[int] | None = None,
) -> Experience:
    """Sample k responses per prompt, score them, and compute reference (and optionally old) log-probs.

    `prompt_keys` identify the prompts' random streams (their indices in the run), so a prompt gets the
    same samples on whichever rank it lands."""
    cfg = rt.config
    t0 = time.perf_counter()
    batch = rollout(
        rt.policy,
        rt.tokenizer,
        prompts,
        k,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        seed=seed,
        batch_size=cfg.generation_batch_size,
        prompt_token_ids=prompt_ids,
        prompt_keys=prompt_keys,
    )
    gen_seconds = time.perf_counter() - t0
    texts = decode_responses(rt.tokenizer, batch)
    row_prompts = [prompts[i] for i in batch.prompt_index.tolist()]
    scores = torch.as_tensor(reward_fn(row_prompts, texts), dtype=torch.float32).flatten().to(rt.device)
    if scores.shape[0] != len(texts):
        raise ValueError(
            f"the reward function returned {scores.shape[0]} scores for {len(texts)} completions"
        )
    penalized = scores.clone()
    if cfg.missing_eos_penalty is not None:
        # InstructGPT-style runs otherwise learn to ramble to the length limit; truncated answers pay a fixed cost.
        penalized = torch.where(batch.has_eos, penalized, penalized - cfg.missing_eos_penalty)
    mask = batch.response_mask.float()
    with reference_mode(rt.policy, rt.ref) as ref:
        ref_logp = forward_logprobs(rt, ref, batch)
    old_logp = forward_logprobs(rt, rt.policy, batch) if need_old_logprobs else None
    return Experience(
        batch=batch,
        prompts=row_prompts,
        texts=texts,
        scores=scores,
        penalized_scores=penalized,
        old_logprobs=old_logp,
        ref_logprobs=ref_logp,
        kl=torch.zeros_like(mask),
        mask=mask,
        gen_seconds=gen_seconds,
    )


def set_kl(exp: Experience, logprobs: torch.Tensor, estimator: str) -> None:
    """Per-token KL to the reference of the sampled tokens (masked)."""
    exp.kl = per_token_kl(logprobs, exp.ref_logprobs, estimator) * exp.mask


def global_mean_std(x: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) std of a 1-D tensor pooled over ranks."""
    s = all_reduce_sum(
        torch.stack([x.sum(), (x * x).sum(), torch.tensor(float(x.numel()), device=x.device)]).cpu()
    )
    mean = s[0] / s[2]
    return float(mean), float((s[1] / s[2] - mean * mean).clamp(min=0).sqrt())


def rollout_metrics(exp: Experience) -> dict[str, float]:
    """Reward, KL and length statistics of a step's samples (pooled over ranks)."""
    reward_mean, reward_std = global_mean_std(exp.scores.float())
    kl_mean, _ = global_mean_std(exp.kl.sum(1))
    len_mean, _ = global_mean_std(exp.mask.sum(1))
    no_eos, _ = global_mean_std((~exp.batch.has_eos).float())
    gen_tokens = float(all_reduce_sum(exp.mask.sum().cpu()))
    return {
        "reward_mean": reward_mean,
        "reward_std": reward_std,
        "kl": kl_mean,
        "response_length": len_mean,
        "no_eos_frac": no_eos,
        "gen_tokens": gen_tokens,
        "gen_tokens_per_s": gen_tokens / max(exp.gen_seconds, 1e-9),
    }


def token_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Masked mean pooled over ranks."""
    s = all_reduce_sum(torch.stack([(x * mask).sum(), mask.sum()]).cpu())
    return float(s[0] / s[1].clamp(min=1)) if s[1] > 0 else float(masked_mean(x, mask))
