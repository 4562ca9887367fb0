"""The training plan: optimizer steps, batch, epochs, learning rate, warmup and evaluation cadence chosen
from the data size (and model size) for every field the config leaves unset.

InstructGPT's recipe (1 epoch, 64 prompts per step, lr ~1e-5; Ouyang et al. 2022, App. C.2) was made for
hundreds of thousands of comparisons. A labeling team's first 200 rankings give 3 optimizer steps under it,
which is too few to move a reward model off chance. The rule here keeps that recipe for large data sets and
scales down for small ones:

* batch: about `TARGET_STEPS_PER_EPOCH` steps per pass, between `MIN_BATCH` and `MAX_BATCH` groups, and never
  more than there are groups;
* epochs: enough passes for `min_steps` optimizer steps, at least 1, at most `max_epochs` (the validation split
  and early stopping guard against the overfitting that several passes invite);
* learning rate: 1e-5 · sqrt(1e9 / parameters), clamped to [1e-5, 1e-4] — 1e-5 for billion-parameter models
  as in InstructGPT, larger for small encoders, which need bigger steps to move in few updates;
* warmup: 5 % of the steps when the learning rate is chosen here (an explicit lr keeps the caller's schedule);
* evaluation: about `EVALS_PER_RUN` validation passes per run, at most one per epoch apart.

An explicit value always wins, and `max_steps` caps the total in every case.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from worker.training.reward.config import RewardTrainConfig

TARGET_STEPS_PER_EPOCH = 16
MIN_BATCH = 8
MAX_BATCH = 64  # InstructGPT's 64 prompts per step, reached from about 1,000 groups on
EVALS_PER_RUN = 20
WARMUP_FRACTION = 0.05
LR_FLOOR, LR_CEILING = 1e-5, 1e-4


@dataclass(frozen=True)
class TrainPlan:
    """The resolved schedule of one run; `chosen` names each field as "set" (by the config) or "auto"."""

    n_groups: int
    batch_prompts: int
    steps_per_epoch: int
    epochs: float
    total_steps: int
    lr: float
    warmup_steps: int
    eval_every: int
    chosen: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored in meta.json and the metrics)."""
        return asdict(self)

    def summary(self) -> str:
        """One line for the run log, e.g. `240 groups: batch 15 (auto), 16 steps/epoch, ...`."""
        c = self.chosen
        return (f"{self.n_groups} groups: batch {self.batch_prompts} ({c['batch_prompts']}), "
                f"{self.steps_per_epoch} steps/epoch x {self.epochs:g} epochs ({c['epochs']}) = {self.total_steps} "
                f"steps, lr {self.lr:.2g} ({c['lr']}), warmup {self.warmup_steps} ({c['warmup_steps']}), "
                f"validation every {self.eval_every} steps ({c['eval_every']})")


def auto_lr(n_params: int) -> float:
    """The default peak learning rate for a model with `n_params` parameters (see the module docstring)."""
    raw = 1e-5 * math.sqrt(1e9 / max(n_params, 1))
    return float(min(LR_CEILING, max(LR_FLOOR, raw)))


def make_plan(config: RewardTrainConfig, n_groups: int, n_params: int) -> TrainPlan:
    """Resolve the schedule for `n_groups` training groups (after the validation split) and a model size."""
    if n_groups < 1:
        raise ValueError("no training groups")
    chosen: dict[str, str] = {}
    if config.batch_prompts is not None:
        batch, chosen["batch_prompts"] = config.batch_prompts, "set"
    else:
        batch = min(MAX_BATCH, max(MIN_BATCH, round(n_groups / TARGET_STEPS_PER_EPOCH)), n_groups)
        chosen["batch_prompts"] = "auto"
    per_epoch = max(1, math.ceil(n_groups / batch))
    if config.epochs is not None:
        epochs, chosen["epochs"] = float(config.epochs), "set"
    else:
        epochs = min(config.max_epochs, max(1.0, config.min_steps / per_epoch))
        epochs = round(epochs, 3)
        chosen["epochs"] = "auto"
    total = max(1, math.ceil(per_epoch * epochs))
    if config.max_steps and total > config.max_steps:
        total = config.max_steps
        chosen["epochs"] += f", capped by max_steps={config.max_steps}"
    if config.lr is not None:
        lr, chosen["lr"] = float(config.lr), "set"
    else:
        lr, chosen["lr"] = auto_lr(n_params), "auto"
    if config.warmup_steps is not None:
        warmup, chosen["warmup_steps"] = config.warmup_steps, "set"
    elif config.lr is not None:
        warmup, chosen["warmup_steps"] = 0, "auto: explicit lr, no warmup added"
    else:
        warmup, chosen["warmup_steps"] = round(WARMUP_FRACTION * total), "auto"
    if config.eval_every:
        eval_every, chosen["eval_every"] = config.eval_every, "set"
    else:
        eval_every, chosen["eval_every"] = min(per_epoch, max(1, math.ceil(total / EVALS_PER_RUN))), "auto"
    return TrainPlan(n_groups=n_groups, batch_prompts=batch, steps_per_epoch=per_epoch, epochs=epochs,
                     total_steps=total, lr=lr, warmup_steps=min(warmup, total), eval_every=eval_every, chosen=chosen)
