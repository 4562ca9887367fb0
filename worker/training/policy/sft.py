"""Supervised fine-tuning on demonstrations: next-token loss on completion tokens only (prompt masked).

InstructGPT's first stage (Ouyang et al. 2022, sec. 3.5): the prompt conditions the model but is not a
target, so the loss is the mean negative log-likelihood over completion tokens (EOS included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from worker.training.distributed import all_reduce_sum
from worker.training.policy.algorithm import Setup
from worker.training.policy.batching import chunks, encode_completion, pack, response_forward, step_indices
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.run import Demonstration
from worker.training.policy.runtime import Runtime
from worker.training.sampling import encode_prompts

IGNORE_INDEX = -100


@dataclass
class SFTBatch:
    """Packed demonstrations: `labels` equal `input_ids` on completion tokens and IGNORE_INDEX elsewhere."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    response_width: int

    @property
    def loss_mask(self) -> torch.Tensor:
        """1 on the response-window positions that count in the loss."""
        return (self.labels[:, -self.response_width :] != IGNORE_INDEX).float()


def encode_demonstrations(
    tokenizer: PreTrainedTokenizerBase,
    demos: Sequence[Demonstration],
    max_prompt_tokens: int,
    max_completion_tokens: int,
    use_chat_template: bool = True,
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + EOS) per demonstration, with the same prompt formatting as sampling."""
    prompt_ids = encode_prompts(tokenizer, [d.prompt for d in demos], max_prompt_tokens, use_chat_template)
    return [
        (p, encode_completion(tokenizer, d.completion, max_completion_tokens))
        for p, d in zip(prompt_ids, demos, strict=True)
    ]


def make_sft_batch(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int, device: torch.device
) -> SFTBatch:
    """Pack examples in the rollout layout and build labels that mask prompt and padding tokens."""
    ids, attn, resp_mask = pack([e[0] for e in examples], [e[1] for e in examples], pad_id, device)
    width = resp_mask.shape[1]
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -width:] = torch.where(resp_mask.bool(), ids[:, -width:], IGNORE_INDEX)
    return SFTBatch(ids, attn, labels, width)


def sft_token_nll(model: torch.nn.Module, batch: SFTBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood over labelled tokens, and the number of those tokens."""
    logp, _ = response_forward(model, batch.input_ids, batch.attention_mask, batch.response_width)
    mask = batch.loss_mask
    return -(logp * mask).sum(), mask.sum()


@torch.no_grad()
def sft_eval_loss(rt: Runtime, examples: Sequence[tuple[list[int], list[int]]]) -> float:
    """Mean per-token NLL of the policy on `examples` (pooled over ranks)."""
    rt.policy.eval()
    total = torch.zeros(2)
    local = rt.local(examples)
    for sl in chunks(len(local), rt.config.micro_batch_size or 8):
        with rt.autocast():
            nll, n = sft_token_nll(rt.policy, make_sft_batch(local[sl], rt.pad_id, rt.device))
        total += torch.stack([nll.float().cpu(), n.float().cpu()])
    rt.policy.train()
    total = all_reduce_sum(total)
    return float(total[0] / total[1].clamp(min=1))


class SFT:
    """One optimizer step per outer step over `batch_size` demonstrations (accumulated in micro-batches)."""

    def __init__(self, config: PolicyTrainConfig, tokenizer: Any, demos: Sequence[Demonstration]) -> None:
        if not demos:
            raise ValueError("SFT needs at least one demonstration")
        self.examples = encode_demonstrations(
            tokenizer, demos, config.max_prompt_tokens, config.max_completion_tokens, config.use_chat_template
        )

    def trained_modules(self) -> tuple[nn.Module, ...]:
        """Only the policy trains."""
        return ()

    def epoch_size(self) -> int:
        """The demonstrations given."""
        return len(self.examples)

    def meta(self) -> dict[str, Any]:
        """Nothing to add."""
        return {}

    def state(self) -> dict[str, Any]:
        """Nothing beyond the policy and optimizer."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""

    def step(self, rt: Runtime, step: int) -> dict[str, float]:
        """Train on this step's demonstrations; return its metrics."""
        cfg = rt.config
        batch_idx = step_indices(len(self.examples), cfg.batch_size, step, cfg.seed)
        local = [self.examples[i] for i in rt.local(batch_idx)]
        batches = [
            make_sft_batch(local[sl], rt.pad_id, rt.device) for sl in chunks(len(local), cfg.micro_batch_size)
        ]
        # Normalise by the global token count so accumulation and DDP give the exact full-batch gradient.
        n_tokens = all_reduce_sum(torch.tensor(float(sum(b.loss_mask.sum().item() for b in batches))))
        loss_sum = 0.0
        for b in batches:
            with rt.autocast():
                nll, _ = sft_token_nll(rt.policy, b)
            (nll / n_tokens.to(nll.device)).backward()
            loss_sum += float(nll.detach())
        grad_norm = rt.optimizer_step()
        loss = float(all_reduce_sum(torch.tensor(loss_sum)) / n_tokens)
        return {"loss": loss, "grad_norm": grad_norm, "train_tokens": float(n_tokens)}


def prepare_sft(setup: Setup) -> SFT:
    """SFT on the run's demonstrations."""
    return SFT(setup.run.config, setup.tokenizer, setup.run.demonstrations or [])
