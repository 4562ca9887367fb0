"""The reward-model training configuration: one validated dataclass, saved in the checkpoint's meta.json.

The loss and schedule follow InstructGPT (Ouyang et al. 2022, "Training language models to follow
instructions with human feedback", Appendix C.2): a cosine schedule decaying to 10 % of the peak learning
rate, all C(K,2) comparisons of a prompt kept together in one batch element. Epochs, batch, learning rate,
warmup and evaluation cadence left as None (or 0) are chosen from the data size by
`worker.training.reward.plan.make_plan`: InstructGPT's 1 epoch x 64 prompts on large data, more passes and
smaller batches on a team's first few hundred rankings, with a validation split and early stopping.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# "auto" picks by architecture (worker.training.reward.model.resolve_pooling).
POOLING_CHOICES = ("auto", "last", "mean", "cls", "head")
# Lower is better for the losses, higher for accuracy (worker.training.reward.eval.pairwise_metrics keys).
SELECT_CHOICES = ("calibrated_loss", "loss", "accuracy")
MAX_ENSEMBLE_HEADS = 16


class ConfigError(ValueError):
    """A training configuration value is out of range; the message names the field."""


@dataclass
class RewardTrainConfig:
    """Everything that shapes a reward-model training run (all fields have safe defaults except base_model)."""

    base_model: str
    epochs: float | None = None  # None: enough passes for min_steps steps, 1 to max_epochs (plan.make_plan)
    lr: float | None = None  # None: from the model size (plan.auto_lr)
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int | None = None  # None: 5 % of the steps with an automatic lr, 0 with an explicit one
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    batch_prompts: int | None = None  # groups per optimizer step, across all ranks (None: ~16 steps/epoch, 8..64)
    min_steps: int = 200  # automatic epochs aim for at least this many optimizer steps
    max_epochs: float = 10.0  # ... but never more passes than this
    max_steps: int = 0  # hard cap on optimizer steps whatever the other fields say (0: none)
    token_budget: int = 16384  # padded tokens per micro-batch; micro-batches split by whole groups
    max_length: int = 512  # tokens per (prompt, completion); longer inputs keep their end and latest turns
    pooling: str = "auto"  # auto | last | mean | cls | head (model.POOLING_MODES)
    ensemble_heads: int = 1  # reward heads on one backbone, each fit on its own bootstrap of the groups (model.py)
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
    val_fraction: float = 0.1  # prompts of the training data kept aside for model selection
    val_min_groups: int = 10  # val_fraction x groups below this: no validation, train on everything
    eval_every: int = 0  # optimizer steps between validation passes (0: about 20 per run)
    patience: int = 5  # validation passes without a better score before stopping (0: never stop early)
    select_on: str = "calibrated_loss"  # validation score to keep the best weights by (SELECT_CHOICES)
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
        for name in ("epochs", "lr", "max_epochs"):
            value = getattr(self, name)
            if value is None and name != "max_epochs":
                continue
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise bad(name, "must be a positive number (or None: chosen from the data)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        for name in ("warmup_steps", "checkpoint_every", "max_steps", "eval_every", "patience", "min_steps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise bad(name, "must be >= 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise bad("adam_betas", "both betas must be in [0, 1)")
        if not self.grad_clip >= 0:
            raise bad("grad_clip", "must be >= 0 (0 disables clipping)")
        for name in ("batch_prompts", "token_budget", "max_length", "eval_batch_size", "val_min_groups"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise bad(name, "must be >= 1")
        if not (isinstance(self.ensemble_heads, int) and 1 <= self.ensemble_heads <= MAX_ENSEMBLE_HEADS):
            raise bad("ensemble_heads", f"must be an integer from 1 to {MAX_ENSEMBLE_HEADS}")
        if self.pooling not in POOLING_CHOICES:
            raise bad("pooling", f"must be one of {', '.join(POOLING_CHOICES)}")
        if self.select_on not in SELECT_CHOICES:
            raise bad("select_on", f"must be one of {', '.join(SELECT_CHOICES)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad("val_fraction", "must be in [0, 1)")
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
