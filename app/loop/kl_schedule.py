"""The KL schedule of the loop (pure): each PPO/RLOO round's KL coefficient, from the round before.

The loop's rounds all take their KL against the frozen SFT version, so the policy's distance to it adds up
round after round, and with a fixed coefficient the budget (`training.kl_budget`, a promotion gate) is
spent by the second or third round: from then on every candidate is rejected and the loop stalls. The
schedule follows the adaptive controller of Ziegler et al. (2019, sec. 2.2), one step per round instead of
per batch and with a stronger gain: the coefficient follows the last round's measured KL to the reference toward a target
(`training.kl_target_share` of the budget), rising when the last candidate went past the target and
falling back, never below the configured `training.kl_beta`, when it stayed under.

One step per round cannot foresee a round that jumps past the budget, so the schedule also sets a stop
inside the round: training ends after the first step whose rollouts are STOP_SHARE of the budget away from
the reference, and the policy of that step is the candidate (measured again on held-out prompts; the
budget is still the gate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# How far one round may move the coefficient: at most 4x up (a rejected candidate far past the budget
# needs a strong pull back) and at most halved down.
MAX_RISE = 4.0
MAX_FALL = 0.5
# The controller's gain: the coefficient moves with (KL / target) ** GAIN. One step per round is a coarse
# controller (three to five rounds, not thousands of batches), and KL to the frozen reference grows while
# the coefficient waits, so the step is stronger than proportional: 1.5x the target KL gives 2.25x the pull.
GAIN = 2.0
# The in-round stop, as a share of the budget: a margin for the held-out measurement after the last step.
STOP_SHARE = 0.9


@dataclass(frozen=True)
class KlStep:
    """The coefficient chosen for a round and what it was chosen from (stored on the version)."""

    coef: float
    target: float
    stop: float | None = None
    previous_version: str | None = None
    previous_coef: float | None = None
    previous_kl: float | None = None

    def as_dict(self) -> dict[str, float | str | None]:
        return {"coef": self.coef, "target": self.target, "stop": self.stop, "previous_version": self.previous_version,
                "previous_coef": self.previous_coef, "previous_kl": self.previous_kl}


def next_coef(floor: float, target: float, previous_coef: float | None, previous_kl: float | None) -> float:
    """The round's KL coefficient: the previous one scaled by (previous KL / target) ** GAIN (clipped to
    [MAX_FALL, MAX_RISE]), never below `floor`; `floor` itself when there is no previous round to learn from."""
    if previous_coef is None or previous_kl is None or not math.isfinite(previous_kl) or target <= 0:
        return floor
    ratio: float = min(max((max(previous_kl, 0.0) / target) ** GAIN, MAX_FALL), MAX_RISE)
    return max(floor, previous_coef * ratio)
