"""Annotator trust: Wilson interval, leave-one-out consensus agreement and weights."""

import pytest
from scipy import stats

from app.quality.stats.records import PairCounts
from app.quality.stats.trust import (
    annotator_trust,
    loo_consensus_counts,
    ranking_weights,
    trust_weight,
    wilson_interval,
)
from tests.quality.quality_factories import ranking, simulated_rankings


def test_wilson_interval_hand_value() -> None:
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    ref = stats.binomtest(8, 10).proportion_ci(method="wilson")
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-6)
    assert wilson_interval(0, 0) == (None, None)
    assert wilson_interval(0, 5)[0] == pytest.approx(0.0, abs=1e-12)


def test_loo_consensus_counts_hand_example() -> None:
    recs = [
        ranking("p", "a", ["x", "y", "z"]),
        ranking("p", "b", ["x", "y", "z"]),
        ranking("p", "d", ["x", "y", "z"]),
        ranking("p", "c", ["z", "y", "x"]),
        ranking("p", "bot", ["x", "z", "y"], is_ai=True),
        ranking("q", "a", ["u", "v"]),  # nobody else: no evidence
    ]
    counts = loo_consensus_counts(recs)
    assert counts["a"] == PairCounts(3, 3)  # others b, d, c: consensus x>y>z
    assert counts["c"] == PairCounts(0, 3)
    assert counts["bot"] == PairCounts(2, 3)  # scored against all four humans


def test_loo_skips_pairs_the_others_split_evenly() -> None:
    recs = [ranking("p", "a", ["x", "y"]), ranking("p", "b", ["x", "y"]), ranking("p", "c", ["y", "x"])]
    assert loo_consensus_counts(recs)["a"] == PairCounts(0, 0)  # b and c cancel out
    assert loo_consensus_counts(recs)["c"] == PairCounts(0, 1)


def test_trust_weight_formula() -> None:
    assert trust_weight(PairCounts()) == pytest.approx(0.6)  # prior 0.8 -> 2 * 0.8 - 1
    assert trust_weight(PairCounts(96, 100)) == pytest.approx(2 * (96 + 3.2) / 104 - 1)
    assert trust_weight(PairCounts(50, 100)) == 0.1  # coin-flipper hits the floor
    assert trust_weight(PairCounts(100, 100)) <= 1.0


def test_random_annotator_trusted_clearly_less_than_consistent_ones() -> None:
    recs = simulated_rankings(40, 4, {"c1": 0.5, "c2": 0.5, "c3": 0.7, "rand": float("inf")}, seed=1)
    trust = annotator_trust(recs)
    rand = trust["rand"]
    for c in ("c1", "c2", "c3"):
        assert trust[c].ci[0] > rand.ci[1]  # intervals do not even overlap
        assert trust[c].weight > rand.weight + 0.4
    assert rand.agreement == pytest.approx(0.5, abs=0.1)


def test_gold_counts_enter_trust_and_ranking_weights() -> None:
    recs = [ranking("p", "a", ["x", "y"]), ranking("p", "b", ["x", "y"]), ranking("g", "a", ["u", "v"])]
    trust = annotator_trust(recs, {"a": PairCounts(0, 10)})
    assert trust["a"].consensus == PairCounts(1, 1) and trust["a"].gold == PairCounts(0, 10)
    assert trust["a"].agreement == pytest.approx(1 / 11)
    assert trust["a"].weight == 0.1
    w = ranking_weights(recs, trust, too_fast=[recs[1].ranking_id])
    assert w[recs[0].ranking_id] == 0.1
    assert w[recs[1].ranking_id] == pytest.approx(trust["b"].weight * 0.5)
