"""Round planning (app.loop.planning), pure: the prompt mix of a round and the policy mix of a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.loop.planning import (
    DISPUTED,
    LEAST_RECENT,
    NEVER_RANKED,
    UNCERTAIN,
    PromptState,
    choose_prompts,
    policy_mix,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _ranked(pid: int, hours_ago: float, uncertainty: float | None = None) -> PromptState:
    return PromptState(pid, ranked=True, pending=False, last_sampled_at=T0 - timedelta(hours=hours_ago),
                       uncertainty=uncertainty)


def test_never_ranked_first_then_uncertain_then_least_recent() -> None:
    states = [
        _ranked(1, hours_ago=1, uncertainty=0.1),
        _ranked(2, hours_ago=5),
        _ranked(3, hours_ago=9),
        _ranked(4, hours_ago=2, uncertainty=0.6),
        PromptState(5, ranked=False, pending=False),
        PromptState(6, ranked=False, pending=False, priority=2.0),
        PromptState(7, ranked=False, pending=True),  # still being labeled: never chosen
        _ranked(8, hours_ago=20, uncertainty=0.3),
    ]
    chosen = choose_prompts(states, 6, uncertain_share=0.34)
    assert [(c.prompt_id, c.reason) for c in chosen] == [
        (6, NEVER_RANKED), (5, NEVER_RANKED),  # priority first, then oldest
        (4, UNCERTAIN), (8, UNCERTAIN), (1, UNCERTAIN),  # at most ceil(0.34 * 6) = 3, most uncertain first
        (3, LEAST_RECENT),  # sampled 9 hours ago, before prompt 2
    ]


def test_uncertain_share_caps_the_uncertain_tier() -> None:
    states = [_ranked(i, hours_ago=i, uncertainty=i / 10) for i in range(1, 7)]
    chosen = choose_prompts(states, 4, uncertain_share=0.5)
    assert [(c.prompt_id, c.reason) for c in chosen] == [
        (6, UNCERTAIN), (5, UNCERTAIN), (4, LEAST_RECENT), (3, LEAST_RECENT),
    ]


def test_test_set_prompts_are_never_chosen() -> None:
    """Held-out prompts (the reward model's fixed test set) stay out of every tier, even a short round."""
    states = [
        PromptState(1, ranked=False, pending=False, held_out=True),  # cannot happen (joins once ranked), still out
        PromptState(2, ranked=True, pending=False, uncertainty=0.9, disagreement=1.0, held_out=True,
                    last_sampled_at=T0 - timedelta(days=30)),
        _ranked(3, hours_ago=1, uncertainty=0.1),
    ]
    assert [c.prompt_id for c in choose_prompts(states, 5)] == [3]
    assert choose_prompts(states[:2], 5) == []


def test_disputed_prompts_come_after_the_uncertain_ones_and_before_the_least_recent() -> None:
    def ranked(pid: int, hours_ago: float, uncertainty: float | None = None,
               disagreement: float | None = None) -> PromptState:
        return PromptState(pid, ranked=True, pending=False, last_sampled_at=T0 - timedelta(hours=hours_ago),
                           uncertainty=uncertainty, disagreement=disagreement)

    states = [
        ranked(1, hours_ago=50),
        ranked(2, hours_ago=1, disagreement=0.2),
        ranked(3, hours_ago=2, disagreement=0.7),
        ranked(4, hours_ago=3, uncertainty=0.5, disagreement=0.9),  # uncertain first: taken once
        ranked(5, hours_ago=4, disagreement=0.0),  # everyone agreed: not disputed
        ranked(6, hours_ago=5, disagreement=0.4),
    ]
    chosen = choose_prompts(states, 5, uncertain_share=0.2, disagreement_share=0.4)
    assert [(c.prompt_id, c.reason) for c in chosen] == [
        (4, UNCERTAIN),
        (3, DISPUTED), (6, DISPUTED),  # at most ceil(0.4 * 5) = 2, most disputed first
        (1, LEAST_RECENT), (5, LEAST_RECENT),
    ]
    no_tier = choose_prompts(states, 5, uncertain_share=0.2, disagreement_share=0.0)
    assert DISPUTED not in {c.reason for c in no_tier}


def test_a_fixed_pool_keeps_turning_and_resample_off_stops_it() -> None:
    states = [_ranked(i, hours_ago=10 - i) for i in range(1, 5)]
    assert [c.prompt_id for c in choose_prompts(states, 2)] == [1, 2]  # the least recently sampled
    assert choose_prompts(states, 2, resample=False) == []
    assert choose_prompts([PromptState(9, ranked=False, pending=True)], 3) == []


@pytest.mark.parametrize(("k", "expected"), [
    (4, [(10, 2), (20, 1), (30, 1)]),  # K-2 / 1 / 1
    (6, [(10, 4), (20, 1), (30, 1)]),
    (3, [(10, 1), (20, 1), (30, 1)]),
    (2, [(10, 1), (30, 1)]),  # the active share gives way first, the candidate always writes one
])
def test_policy_mix_shares_a_task_between_versions(k: int, expected: list[tuple[int, int]]) -> None:
    assert policy_mix(k, candidate=10, active=20, sft=30) == expected


def test_policy_mix_pools_roles_of_one_version() -> None:
    assert policy_mix(4, candidate=10, active=10, sft=30) == [(10, 3), (30, 1)]  # candidate promoted
    assert policy_mix(4, candidate=1, active=1, sft=1) == [(1, 4)]  # round 1: all from the SFT model
    assert policy_mix(4, candidate=10, active=20, sft=30, from_active=0, from_sft=0) == [(10, 4)]


def test_the_uncertain_tier_reads_an_ensembles_disagreement_when_it_scored_every_candidate() -> None:
    from app.loop.queries import PromptRow
    from app.loop.service import _uncertainty
    from app.quality.stats.active import ensemble_disagreement, margin_uncertainty

    scores = [0.0, -4.0, -8.0]  # clear-cut by the mean
    disputed = [[0.0, 0.0, 0.0], [-4.0, 4.0, -4.0], [-8.0, 8.0, -8.0]]  # one member sure of the opposite
    row = PromptRow(1, 0.0, True, False, 0, None, {7: scores}, {7: disputed})
    expected = ensemble_disagreement([list(m) for m in zip(*disputed, strict=True)])
    assert _uncertainty(row, 7) == pytest.approx(expected) and expected > margin_uncertainty(scores)
    partly = PromptRow(1, 0.0, True, False, 0, None, {7: scores}, {7: [disputed[0], None, disputed[2]]})
    assert _uncertainty(partly, 7) == pytest.approx(margin_uncertainty(scores))  # not every candidate: the margin
