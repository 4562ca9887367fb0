"""The training runtime the four algorithms share: models, optimizer, device, rank, autocast, and the one
optimizer step (gradients summed over ranks, clipped, applied).

Algorithms (ppo.py, rloo.py, dpo.py, sft.py) only write their loss and loop body; model loading lives in
models.py, batching in batching.py, process-group set-up in worker.training.distributed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from worker.training.devices import bf16_autocast
from worker.training.distributed import dist_active
from worker.training.policy.config import PolicyTrainConfig
from worker.training.sampling import pad_token_id

ProgressFn = Callable[[float, str], None]
StopFn = Callable[[], bool]


@dataclass
class Runtime:
    """Everything an algorithm's loop body needs; built by `train_policy`.

    `trained` are the modules an algorithm trains beside the policy (PPO's value model): their gradients
    are summed and clipped with the policy's in `optimizer_step`.
    """

    config: PolicyTrainConfig
    policy: PreTrainedModel
    ref: PreTrainedModel | None
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total_steps: int
    rank: int = 0
    world: int = 1
    trained: tuple[nn.Module, ...] = ()

    @property
    def pad_id(self) -> int:
        """Pad token id (EOS when the tokenizer has none)."""
        return pad_token_id(self.tokenizer)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA (weights stay fp32) unless `bf16` is False; a no-op on CPU."""
        use = self.config.bf16 if self.config.bf16 is not None else self.device.type == "cuda"
        return bf16_autocast(self.device, use)

    def local(self, items: Sequence[Any]) -> list[Any]:
        """This rank's share of a global batch."""
        return list(items[self.rank :: self.world])

    def params(self) -> list[nn.Parameter]:
        """Every trainable parameter (policy and, for PPO, value model)."""
        ps = [p for p in self.policy.parameters() if p.requires_grad]
        for module in self.trained:
            ps += [p for p in module.parameters() if p.requires_grad]
        return ps

    def optimizer_step(self) -> float:
        """Sum gradients over ranks (losses are already normalised by global counts), clip, step; returns grad norm."""
        params = self.params()
        if dist_active():
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        """Current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])


def make_optimizer(
    config: PolicyTrainConfig, params: list[nn.Parameter], total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW plus warmup and a constant, linear or cosine schedule over `total_steps` outer steps."""
    opt = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        span = max(total_steps - config.warmup_steps, 1)
        progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
        if config.lr_schedule == "linear":
            return 1.0 - progress
        if config.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
