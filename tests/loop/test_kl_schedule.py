"""The loop's KL schedule: the coefficient of a PPO/RLOO round follows the last round's KL to the reference."""

from __future__ import annotations

import math

import pytest

from app.loop.kl_schedule import GAIN, MAX_FALL, MAX_RISE, next_coef


def test_the_first_round_takes_the_configured_coefficient() -> None:
    assert next_coef(0.02, 6.0, None, None) == 0.02
    assert next_coef(0.02, 6.0, 0.05, math.nan) == 0.02


@pytest.mark.parametrize(("previous_kl", "expected"), [
    (9.0, 0.03 * 1.5 ** GAIN),   # past the target: the pull back grows faster than the overshoot
    (60.0, 0.03 * MAX_RISE),     # far past it: at most MAX_RISE times in one round
    (5.0, 0.03 * (5 / 6) ** GAIN),  # under the target: it relaxes ...
    (0.1, 0.03 * MAX_FALL),      # ... at most halved ...
    (-0.2, 0.03 * MAX_FALL),     # (a negative KL estimate counts as none)
])
def test_the_coefficient_follows_the_last_kl_toward_the_target(previous_kl: float, expected: float) -> None:
    assert next_coef(0.01, 6.0, 0.03, previous_kl) == pytest.approx(expected)


def test_it_never_falls_below_the_configured_coefficient() -> None:
    assert next_coef(0.02, 6.0, 0.03, 1.0) == 0.02
