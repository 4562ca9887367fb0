"""The reward-model training configuration: one validated dataclass, saved in the checkpoint's meta.json.

Defaults follow InstructGPT (Ouyang et al. 2022, "Training language models to follow instructions with
human feedback", Appendix C.2): a single epoch over the comparison data, a learning rate around 1e-5
(9e-6 for their 6B RM) with a cosine schedule decaying to 10 % of its initial value, batches of
64 prompts with all C(K,2) comparisons of a prompt kept together in one batch element.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A training configuration value is out of range; the message names the field."""


@dataclass
class RewardTrainConfig:
    """Everything that shapes a reward-model training run (all fields have safe defaults except base_model)."""

    base_model: str
    epochs: float = 1.0
    lr: float = 1e-5
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    batch_prompts: int = 64  # groups (prompts) per optimizer step, across all ranks
    token_budget: int = 16384  # padded tokens per micro-batch; micro-batches split by whole groups
    max_length: int = 512  # tokens per (prompt, completion); longer inputs keep their end
    center_coef: float = 0.01  # adds center_coef * mean(r^2) so rewards stay near 0
    rank_gap_weighting: bool = False  # weight pair losses by |rank_w - rank_l| (per-group mean kept)
    gradient_checkpointing: bool = False
    share_prefix: bool = False  # forward each group's common prompt prefix once (decoder models; not with checkpointing)
    disable_dropout: bool = True  # deterministic rewards for the pairwise margins (as TRL's RewardTrainer does)
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    seed: int = 0
    checkpoint_every: int = 0  # optimizer steps between resume states (0: only when stopped)
    eval_batch_size: int = 32
    heldout_fraction: float = 0.0  # used by the CLI when no separate held-out file is given
    extra: dict[str, Any] = field(default_factory=dict)  # free-form provenance (e.g. data file, job id)

    def __post_init__(self) -> None:
        self.adam_betas = (float(self.adam_betas[0]), float(self.adam_betas[1]))
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field."""

        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"RewardTrainConfig.{name} = {getattr(self, name)!r}: {why}")

        if not self.base_model:
            raise bad("base_model", "must name a model directory")
        for name in ("epochs", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise bad(name, "must be a positive number")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        for name in ("warmup_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise bad("adam_betas", "both betas must be in [0, 1)")
        if not self.grad_clip >= 0:
            raise bad("grad_clip", "must be >= 0 (0 disables clipping)")
        for name in ("batch_prompts", "token_budget", "max_length", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise bad(name, "must be >= 1")
        if self.center_coef < 0:
            raise bad("center_coef", "must be >= 0")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise bad("heldout_fraction", "must be in [0, 1)")
        if self.share_prefix and self.gradient_checkpointing:
            raise bad("share_prefix", "needs a KV cache, which gradient checkpointing turns off; choose one")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for meta.json)."""
        data = dataclasses.asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardTrainConfig:
        """Inverse of `to_dict`; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown RewardTrainConfig field(s): {', '.join(unknown)}")
        return cls(**data)
