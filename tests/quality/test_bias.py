"""Position bias, length correlation and time-on-task outliers."""

import numpy as np
import pytest
from scipy import stats

from app.quality.stats.bias import (
    _poisson_binomial_pmf,
    length_rank_correlation,
    position_bias,
    time_outliers,
)
from tests.quality.quality_factories import ranking


def _simulated(prefers_first: bool, n: int = 80, k: int = 4, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n):
        items = [f"c{i}" for i in range(k)]
        shown = [items[i] for i in rng.permutation(k)]
        order = shown if prefers_first else [items[i] for i in rng.permutation(k)]
        out.append(ranking(f"p{p}", "ann", order, shown=shown))
    return out


def test_always_first_annotator_is_detected() -> None:
    pb = position_bias(_simulated(True))
    assert (pb.n, pb.first_wins, pb.rate, pb.expected) == (80, 80, 1.0, 0.25)
    assert pb.p_value is not None and pb.p_value < 1e-30 and pb.detected()


def test_random_annotator_is_not_detected() -> None:
    pb = position_bias(_simulated(False, seed=5))
    assert pb.rate == pytest.approx(0.25, abs=0.1)
    assert not pb.detected() and pb.p_value is not None and pb.p_value > 0.05


def test_p_value_equals_scipy_binomtest_for_constant_k() -> None:
    recs = _simulated(False, n=40, seed=2)
    pb = position_bias(recs)
    assert pb.p_value == pytest.approx(stats.binomtest(pb.first_wins, pb.n, 0.25).pvalue, rel=1e-9)


def test_poisson_binomial_pmf_by_brute_force() -> None:
    ps = [0.5, 0.25, 0.25, 1 / 3]
    brute = np.zeros(5)
    for bits in range(16):
        outcome = [(bits >> i) & 1 for i in range(4)]
        brute[sum(outcome)] += np.prod([p if o else 1 - p for p, o in zip(ps, outcome, strict=True)])
    assert _poisson_binomial_pmf(ps) == pytest.approx(brute)


def test_ties_for_best_and_single_items_are_skipped() -> None:
    recs = [ranking("p", "a", {"x": 1, "y": 1, "z": 2}), ranking("q", "a", ["x"]), ranking("r", "a", ["x", "y"])]
    pb = position_bias(recs)
    assert (pb.n, pb.first_wins, pb.expected) == (1, 1, 0.5)
    assert position_bias([]).p_value is None


def test_length_rank_correlation() -> None:
    longer_wins = ranking("p", "a", ["x", "y", "z"], lengths={"x": 30, "y": 20, "z": 10})
    assert length_rank_correlation([longer_wins]) == pytest.approx(-1.0)
    mixed = ranking("q", "a", ["x", "y", "z"], lengths={"x": 20, "y": 10, "z": 30})  # rho = +0.5
    assert length_rank_correlation([longer_wins, mixed]) == pytest.approx(-0.25)
    same = ranking("r", "a", ["x", "y", "z"], lengths={"x": 5, "y": 5, "z": 5})
    assert length_rank_correlation([same]) is None


def test_time_outliers_reading_bound_and_mad() -> None:
    lengths = {"x": 100, "y": 100}  # 200 words -> 20 s at 10 words/s
    recs = [ranking(f"p{i}", "a", ["x", "y"], lengths=lengths, seconds=s) for i, s in enumerate([60, 70, 65, 80, 15])]
    out = time_outliers(recs)
    assert [o.ranking_id for o in out] == [recs[4].ranking_id]
    assert "reading bound" in out[0].reason
    # no lengths: the MAD rule catches a 2.5 s ranking among ~60 s ones
    recs2 = [ranking(f"q{i}", "b", ["x", "y"], seconds=s) for i, s in enumerate([55, 60, 62, 58, 61, 66, 2.5])]
    out2 = time_outliers(recs2)
    assert [o.ranking_id for o in out2] == [recs2[-1].ranking_id] and "robust z" in out2[0].reason
