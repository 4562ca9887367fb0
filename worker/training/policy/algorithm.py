"""The protocol every policy-training algorithm (PPO, RLOO, DPO, SFT) implements, and what preparing one gets.

`train_policy` drives any of them through it: `prepare` (a registry entry's factory) encodes the data and
builds what the algorithm trains beside the policy before the optimizer exists; `step` runs one outer step
on the shared `Runtime`; `state`/`load_state` carry what the algorithm adds to the resume state.
Held-out evaluation is not part of the protocol: it follows the held-out data a run is given (prompts,
rankings, demonstrations), whichever algorithm trains (worker.training.policy.evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from worker.training.policy.rewards import RewardFn
from worker.training.policy.run import PolicyRun
from worker.training.policy.runtime import Runtime


@dataclass(frozen=True)
class Setup:
    """What an algorithm is prepared from: the run, its resolved reward (None without one), tokenizer, device."""

    run: PolicyRun
    reward_fn: RewardFn | None
    tokenizer: Any
    device: torch.device


class PolicyAlgorithm(Protocol):
    """One training algorithm, prepared for a run."""

    def trained_modules(self) -> tuple[nn.Module, ...]:
        """Modules trained beside the policy (PPO's value model); their parameters join the optimizer."""
        ...

    def epoch_size(self) -> int:
        """Examples one epoch covers (SFT demonstrations, DPO groups), which sets the steps when `steps` is
        None; 0 for on-policy algorithms, whose steps are always given."""
        ...

    def meta(self) -> dict[str, Any]:
        """Entries for the checkpoint's meta.json (e.g. how the value model was initialised)."""
        ...

    def step(self, rt: Runtime, step: int) -> dict[str, float]:
        """Run outer step `step` (one or more optimizer steps) and return its metrics."""
        ...

    def state(self) -> dict[str, Any]:
        """What the algorithm adds to the resume state (KL controller, value weights)."""
        ...

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `state` saved."""
        ...


@dataclass(frozen=True)
class AlgorithmEntry:
    """A registry entry: how to prepare the algorithm, and whether it needs a reward to train against."""

    prepare: Callable[[Setup], PolicyAlgorithm]
    needs_reward: bool = False
