"""`PolicyRun`: everything one `train_policy` call needs, in one typed, frozen value; SFT's `Demonstration`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from worker.training.groups import RankingGroup
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.rewards import RewardFn
from worker.training.policy.runtime import ProgressFn, StopFn
from worker.training.sampling import Prompt


@dataclass
class Demonstration:
    """A prompt and the ideal completion written for it (SFT's training data)."""

    prompt: Prompt
    completion: str


@dataclass(frozen=True)
class PolicyRun:
    """One policy-training run: hyper-parameters, models in and out, data, and the caller's hooks.

    PPO/RLOO need `prompts` and a reward (`reward_fn`, or `reward_model_path` adapted through the reward
    package); DPO needs ranking `groups`; SFT needs `demonstrations`. Training state is saved every
    `config.save_every` steps to `output_dir/train_state`; a later run with the same output_dir resumes
    from it. `reference_path` is the frozen KL reference (default: a copy of the starting policy); KL in
    the metrics is measured against it. When `should_stop()` turns true the state is saved and the result
    has `stopped=True`, no checkpoint. `judge_model_paths` name more reward models that score the same
    held-out samples before and after (`reward_mean@<name>`), a second opinion for promotion.
    """

    config: PolicyTrainConfig
    policy_path: str | Path
    output_dir: str | Path
    reference_path: str | Path | None = None
    prompts: Sequence[Prompt] | None = None
    reward_fn: RewardFn | None = None
    reward_model_path: str | Path | None = None
    groups: Sequence[RankingGroup] | None = None
    demonstrations: Sequence[Demonstration] | None = None
    heldout_prompts: Sequence[Prompt] | None = None
    heldout_groups: Sequence[RankingGroup] | None = None
    heldout_demonstrations: Sequence[Demonstration] | None = None
    ptx_texts: Sequence[str] | None = None
    judge_model_paths: Mapping[str, str | Path] = field(default_factory=dict)
    progress: ProgressFn | None = None
    should_stop: StopFn | None = None
    device: str | torch.device | None = "auto"
