"""Active selection picks the prompts the reward model is least sure about."""

import math

import numpy as np
import pytest

from app.quality.stats.active import (
    ensemble_disagreement,
    margin_uncertainty,
    select_by_disagreement,
    select_by_margin,
)


def test_margin_uncertainty_values() -> None:
    assert margin_uncertainty([0.0, 0.0]) == pytest.approx(math.log(2))  # a coin flip
    assert margin_uncertainty([10.0, -10.0]) < 1e-6
    assert margin_uncertainty([1.0, 3.0, 1.5], kind="min_margin") == pytest.approx(-0.5)
    assert margin_uncertainty([1.0]) == float("-inf")


def test_select_by_margin_picks_the_most_uncertain_prompts() -> None:
    rng = np.random.default_rng(0)
    rewards = {f"easy{i}": (rng.normal(size=4) * 0.1 + np.array([0, 3, 6, 9])).tolist() for i in range(20)}
    rewards.update({"close1": [0.0, 0.05, 0.1, 0.12], "close2": [1.0, 1.2, 0.9, 1.1]})
    assert set(select_by_margin(rewards, limit=2)) == {"close1", "close2"}
    assert set(select_by_margin(rewards, limit=2, kind="min_margin")) == {"close1", "close2"}
    assert len(select_by_margin(rewards)) == 22


def test_ensemble_disagreement_prefers_disputes_over_agreed_ties() -> None:
    agreed_tie = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]  # uncertain but the members agree: MI = 0
    dispute = [[5.0, -5.0], [-5.0, 5.0], [5.0, -5.0]]
    agreed = [[5.0, -5.0], [5.0, -5.0], [5.0, -5.0]]
    assert ensemble_disagreement(agreed_tie) == pytest.approx(0.0, abs=1e-9)
    assert ensemble_disagreement(agreed) == pytest.approx(0.0, abs=1e-6)
    assert ensemble_disagreement(dispute) > 0.5
    order = select_by_disagreement({"tie": agreed_tie, "agreed": agreed, "dispute": dispute})
    assert order[0] == "dispute"


def test_order_is_deterministic_for_equal_scores() -> None:
    rewards = {"b": [0.0, 1.0], "a": [0.0, 1.0], "c": [0.0, 1.0]}
    assert select_by_margin(rewards) == ["b", "a", "c"]
