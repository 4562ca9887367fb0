"""Round planning as pure functions (no database): which prompts a round samples, and how a task's K
candidates are shared between the round's policies.

Prompt choice (`choose_prompts`), in this order, never a prompt still being labeled (an open slot) and
never a prompt of the project's fixed reward-model test set (held out: app.registry.service.extend_test_set):
1. never-ranked prompts (no ranking at all: new uploads, or sampled but never rankable), highest
   priority then oldest first;
2. with `resample`, ranked prompts the reward model is least sure about (the active-selection priority of
   its scores over the prompt's latest candidates, app.quality.stats.active.prompt_uncertainty: an
   ensemble's disagreement, else the mean pairwise entropy; the active model's scores, else the newest
   model's that scored them), at most `uncertain_share` of the round;
3. with `resample`, ranked prompts people disagree on most (1 - the pairwise agreement between the
   humans who ranked the same candidates, app.quality.stats.agreement.pairwise_agreement; only prompts
   with some disagreement), at most `disagreement_share` of the round;
4. then ranked prompts sampled least recently (oldest latest completion first).
A round that the first tiers leave short is filled from the next ones, so a fixed pool keeps turning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

NEVER_RANKED = "never_ranked"
UNCERTAIN = "uncertain"
DISPUTED = "disputed"
LEAST_RECENT = "least_recent"


@dataclass(frozen=True)
class PromptState:
    """What planning knows about one prompt."""

    prompt_id: int
    ranked: bool
    pending: bool
    priority: float = 0.0
    last_sampled_at: datetime | None = None
    uncertainty: float | None = None
    disagreement: float | None = None
    held_out: bool = False


@dataclass(frozen=True)
class Choice:
    prompt_id: int
    reason: str


def choose_prompts(states: list[PromptState], n: int, *, resample: bool = True,
                   uncertain_share: float = 0.5, disagreement_share: float = 0.25) -> list[Choice]:
    """Up to `n` prompts for the next round, by the mix in the module docstring."""
    free = [s for s in states if not s.pending and not s.held_out]
    fresh = sorted((s for s in free if not s.ranked), key=lambda s: (-s.priority, s.prompt_id))
    chosen = [Choice(s.prompt_id, NEVER_RANKED) for s in fresh[:n]]
    if not resample or len(chosen) >= n:
        return chosen
    ranked = [s for s in free if s.ranked]
    uncertain = sorted((s for s in ranked if s.uncertainty is not None),
                       key=lambda s: (-(s.uncertainty or 0.0), s.prompt_id))
    cap = min(n - len(chosen), math.ceil(uncertain_share * n))
    chosen += [Choice(s.prompt_id, UNCERTAIN) for s in uncertain[:cap]]
    taken = {c.prompt_id for c in chosen}
    disputed = sorted((s for s in ranked if s.prompt_id not in taken and (s.disagreement or 0.0) > 0),
                      key=lambda s: (-(s.disagreement or 0.0), s.prompt_id))
    cap = min(n - len(chosen), math.ceil(disagreement_share * n))
    chosen += [Choice(s.prompt_id, DISPUTED) for s in disputed[:cap]]
    taken = {c.prompt_id for c in chosen}
    oldest = sorted((s for s in ranked if s.prompt_id not in taken),
                    key=lambda s: (s.last_sampled_at is not None, s.last_sampled_at or datetime.min, s.prompt_id))
    chosen += [Choice(s.prompt_id, LEAST_RECENT) for s in oldest[: n - len(chosen)]]
    return chosen


def policy_mix(k: int, *, candidate: int, active: int, sft: int, from_active: int = 1,
               from_sft: int = 1) -> list[tuple[int, int]]:
    """How many of a task's `k` candidates each policy version writes: [(version id, count)], the
    candidate first.

    `from_active` come from the active policy and `from_sft` from the SFT version; the round's new
    candidate writes the rest and at least one (the active share shrinks first, then the SFT share, when
    k is small). Roles that are the same version pool their counts (round 1: all k from the SFT model).
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    n_sft = min(from_sft, k - 1)
    n_active = min(from_active, k - 1 - n_sft)
    counts: dict[int, int] = {}
    for version, count in ((candidate, k - n_active - n_sft), (active, n_active), (sft, n_sft)):
        if count > 0:
            counts[version] = counts.get(version, 0) + count
    return list(counts.items())
