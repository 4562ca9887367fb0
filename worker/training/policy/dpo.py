"""Direct Preference Optimization (Rafailov et al. 2023) from ranking groups, offline.

Input is a ranking per prompt (K completions, rank 1 best, ties allowed) rather than pairs: each
completion is run through the policy once per step and through the frozen reference once for the whole
run (cached), and every (better, worse) pair of the ranking is scored from those sequence log-probs. This
is InstructGPT's trick for its reward model (all K-choose-2 comparisons from K forwards) applied to DPO.
Groups are the shared `worker.training.groups.RankingGroup` (the reward model reads the same files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from worker.training.distributed import all_reduce_sum
from worker.training.groups import RankingGroup
from worker.training.policy.algorithm import Setup
from worker.training.policy.batching import chunks, encode_completion, pack, response_forward, step_indices
from worker.training.policy.common import dpo_loss, ranking_pairs
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.models import reference_mode
from worker.training.policy.runtime import Runtime
from worker.training.sampling import encode_prompts


@dataclass
class _EncodedGroup:
    prompt_ids: list[int]
    completion_ids: list[list[int]]
    pairs: list[tuple[int, int]]
    weight: float = 1.0  # the ranking's trust weight: each of its pairs counts this much in the loss


def sequence_logprobs(
    rt: Runtime, model: torch.nn.Module, prompt_ids: list[int], completions: Sequence[list[int]]
) -> torch.Tensor:
    """Summed log-prob of each completion given the prompt: one row per completion, one forward per micro-batch."""
    out = []
    for sl in chunks(len(completions), rt.config.micro_batch_size):
        part = completions[sl]
        ids, attn, resp = pack([prompt_ids] * len(part), part, rt.pad_id, rt.device)
        with rt.autocast():
            logp, _ = response_forward(model, ids, attn, resp.shape[1])
        out.append((logp * resp).sum(1))
    return torch.cat(out)


def _correct(margin: torch.Tensor) -> torch.Tensor:
    """1 when the better completion has the higher implicit reward, 0.5 on an exact tie (e.g. at the start)."""
    return (margin > 0).float() + 0.5 * (margin == 0).float()


class DPO:
    """One optimizer step per outer step over `batch_size` ranking groups."""

    def __init__(self, config: PolicyTrainConfig, tokenizer: Any, groups: Sequence[RankingGroup]) -> None:
        self.n_groups = len(groups)  # an epoch counts every given group, also those without a preference
        self.groups = encode_groups(config, tokenizer, groups)
        if not self.groups:
            raise ValueError("DPO needs at least one ranking group with two different ranks")
        self._ref_cache: dict[int, torch.Tensor] = {}

    def trained_modules(self) -> tuple[nn.Module, ...]:
        """Only the policy trains."""
        return ()

    def epoch_size(self) -> int:
        """The ranking groups given."""
        return self.n_groups

    def meta(self) -> dict[str, Any]:
        """Nothing to add."""
        return {}

    def state(self) -> dict[str, Any]:
        """Nothing beyond the policy and optimizer (the reference cache is recomputed)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""

    def reference(self, rt: Runtime, index: int) -> torch.Tensor:
        """Reference sequence log-probs of group `index`, computed once and cached for the run."""
        if index not in self._ref_cache:
            g = self.groups[index]
            with torch.no_grad(), reference_mode(rt.policy, rt.ref) as ref:
                self._ref_cache[index] = sequence_logprobs(rt, ref, g.prompt_ids, g.completion_ids).float()
        return self._ref_cache[index]

    def step(self, rt: Runtime, step: int) -> dict[str, float]:
        """Train on this step's groups; return loss, implicit-reward margin and pair accuracy."""
        cfg = rt.config
        local = rt.local(step_indices(len(self.groups), cfg.batch_size, step, cfg.seed))
        n_pairs = all_reduce_sum(torch.tensor(float(sum(len(self.groups[i].pairs) for i in local))))
        # The loss is the weighted mean over pairs (rankings' trust weights); the reported stats stay per pair.
        total_weight = all_reduce_sum(
            torch.tensor(float(sum(len(self.groups[i].pairs) * self.groups[i].weight for i in local)))
        ).clamp(min=1e-12)
        stats = torch.zeros(4)  # loss, margin, correct, chosen reward
        for gi in local:
            g = self.groups[gi]
            ref = self.reference(rt, gi)
            pol = sequence_logprobs(rt, rt.policy, g.prompt_ids, g.completion_ids)
            better = torch.tensor([p[0] for p in g.pairs], device=pol.device)
            worse = torch.tensor([p[1] for p in g.pairs], device=pol.device)
            out = dpo_loss(pol[better], pol[worse], ref[better], ref[worse], cfg.dpo_beta)
            (out.losses.sum() * g.weight / total_weight.to(pol.device)).backward()
            margin = out.chosen_rewards - out.rejected_rewards
            stats += torch.stack(
                [
                    out.losses.detach().sum().cpu(),
                    margin.sum().cpu(),
                    _correct(margin).sum().cpu(),
                    out.chosen_rewards.sum().cpu(),
                ]
            )
        grad_norm = rt.optimizer_step()
        stats = all_reduce_sum(stats) / n_pairs.clamp(min=1)
        return {
            "loss": float(stats[0]),
            "reward_margin": float(stats[1]),
            "accuracy": float(stats[2]),
            "chosen_reward": float(stats[3]),
            "pairs": float(n_pairs),
            "grad_norm": grad_norm,
        }


def encode_groups(config: PolicyTrainConfig, tokenizer: Any, groups: Sequence[RankingGroup]) -> list[_EncodedGroup]:
    """Tokenise prompts (one batched call) and completions; groups without any strict preference are dropped."""
    kept = [g for g in groups if ranking_pairs(g.ranks)]
    if not kept:
        return []
    cfg = config
    prompt_ids = encode_prompts(tokenizer, [g.prompt for g in kept], cfg.max_prompt_tokens, cfg.use_chat_template)
    return [
        _EncodedGroup(
            prompt_ids=p,
            completion_ids=[
                encode_completion(tokenizer, c, cfg.max_completion_tokens) for c in g.completions
            ],
            pairs=ranking_pairs(g.ranks),
            weight=float(g.weight),
        )
        for p, g in zip(prompt_ids, kept, strict=True)
    ]


@torch.no_grad()
def dpo_evaluate(rt: Runtime, groups: Sequence[RankingGroup]) -> dict[str, float]:
    """Implicit-reward margin and preference accuracy of the current policy on (held-out) ranking groups."""
    encoded = encode_groups(rt.config, rt.tokenizer, groups)
    stats = torch.zeros(3)
    for g in rt.local(encoded):
        with reference_mode(rt.policy, rt.ref) as ref:
            ref_lp = sequence_logprobs(rt, ref, g.prompt_ids, g.completion_ids).float()
        pol_lp = sequence_logprobs(rt, rt.policy, g.prompt_ids, g.completion_ids).float()
        for b, w in g.pairs:
            margin = rt.config.dpo_beta * ((pol_lp[b] - ref_lp[b]) - (pol_lp[w] - ref_lp[w]))
            stats += torch.stack([margin.cpu(), _correct(margin).cpu(), torch.tensor(1.0)])
    stats = all_reduce_sum(stats)
    n = float(stats[2].clamp(min=1))
    return {"reward_margin": float(stats[0]) / n, "accuracy": float(stats[1]) / n, "pairs": float(stats[2])}


def prepare_dpo(setup: Setup) -> DPO:
    """DPO on the run's ranking groups."""
    return DPO(setup.run.config, setup.tokenizer, setup.run.groups or [])
