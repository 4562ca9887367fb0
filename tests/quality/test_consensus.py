"""Ranked pairs, Bradley-Terry and Plackett-Luce consensus."""

import math

import numpy as np
import pytest
from scipy import optimize

from app.quality.stats.choice_models import bradley_terry, plackett_luce
from app.quality.stats.consensus import consensus_of, consensus_subset, pairwise_margins, ranked_pairs
from app.quality.stats.records import Comparison, order_to_ranks
from tests.quality.quality_factories import ranking


def _r(order: str) -> dict[str, int]:
    return order_to_ranks(list(order))


def test_ranked_pairs_breaks_a_majority_cycle_at_its_weakest_pair() -> None:
    rankings = [_r("ABC")] * 5 + [_r("BCA")] * 4 + [_r("CAB")] * 2
    m = pairwise_margins(rankings)
    # majority cycle: A>B by 3, B>C by 7, C>A by 1
    assert (m[("A", "B")], m[("B", "C")], m[("C", "A")]) == (3, 7, 1)
    assert ranked_pairs(rankings) == ["A", "B", "C"]


def test_ranked_pairs_same_cycle_other_labels() -> None:
    rankings = [_r("ZXY")] * 5 + [_r("XYZ")] * 4 + [_r("YZX")] * 2
    assert ranked_pairs(rankings) == ["Z", "X", "Y"]


def test_ranked_pairs_perfect_tie_cycle_uses_documented_tie_rule() -> None:
    # Condorcet paradox: every margin is 1 and every net margin 0, so TBRC is by id: A, B, C.
    # Pairs locked in TBRC order of winners: A>B, B>C, then C>A would close the cycle.
    assert ranked_pairs([_r("ABC"), _r("BCA"), _r("CAB")]) == ["A", "B", "C"]
    assert ranked_pairs([_r("CAB"), _r("ABC"), _r("BCA")]) == ["A", "B", "C"]  # order of input irrelevant


def test_ranked_pairs_weights_and_ties() -> None:
    assert ranked_pairs([_r("AB"), _r("BA")], weights=[0.2, 1.0]) == ["B", "A"]
    # a tie inside a ranking expresses no preference; the other ranking decides
    assert ranked_pairs([{"A": 1, "B": 1, "C": 2}, _r("BAC")]) == ["B", "A", "C"]
    # completely undecided: TBRC by id
    assert ranked_pairs([_r("AB"), _r("BA")]) == ["A", "B"]


def test_bradley_terry_two_items_closed_form() -> None:
    comps = [Comparison("A", "B")] * 3 + [Comparison("B", "A")]
    s = bradley_terry(comps, l2=0.0)
    assert s["A"] - s["B"] == pytest.approx(math.log(3), abs=1e-6)
    assert s["A"] + s["B"] == pytest.approx(0.0, abs=1e-9)


def _bt_negloglik(theta: np.ndarray, pairs: list[tuple[int, int, float]], l2: float) -> float:
    nll = sum(w * np.logaddexp(0.0, theta[j] - theta[i]) for i, j, w in pairs)
    return float(nll + 0.5 * l2 * np.sum(theta**2))


def test_bradley_terry_matches_direct_penalised_optimum_and_keeps_unbeaten_finite() -> None:
    # A never loses: without the penalty its strength would diverge
    pairs = [(0, 1, 1.0), (0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0), (2, 1, 2.0), (1, 3, 0.5), (3, 2, 1.0)]
    names = "ABCD"
    s = bradley_terry([Comparison(names[i], names[j], w) for i, j, w in pairs], l2=0.1)
    ref = optimize.minimize(_bt_negloglik, np.zeros(4), args=(pairs, 0.1), method="BFGS", options={"gtol": 1e-10}).x
    got = np.array([s[c] for c in names])
    assert np.all(np.isfinite(got))
    # the penalised optimum is unique; mine is reported centred
    assert got == pytest.approx(ref - ref.mean(), abs=1e-4)
    assert s["A"] == max(s.values())


def _pl_negloglik(theta: np.ndarray, orders: list[list[int]], l2: float) -> float:
    nll = 0.0
    for order in orders:
        for k in range(len(order) - 1):
            rest = order[k:]
            nll -= theta[order[k]] - np.log(np.sum(np.exp(theta[rest])))
    return float(nll + 0.5 * l2 * np.sum(theta**2))


def test_plackett_luce_matches_direct_penalised_optimum() -> None:
    orders = [[0, 1, 2, 3], [1, 0, 2, 3], [0, 2, 1, 3], [3, 0, 1, 2], [0, 1, 3, 2]]
    names = "ABCD"
    s = plackett_luce([order_to_ranks([names[i] for i in o]) for o in orders], l2=0.05)
    ref = optimize.minimize(_pl_negloglik, np.zeros(4), args=(orders, 0.05), method="BFGS", options={"gtol": 1e-10}).x
    assert np.array([s[c] for c in names]) == pytest.approx(ref - ref.mean(), abs=1e-4)


def test_plackett_luce_on_pairs_equals_bradley_terry() -> None:
    rankings = [_r("AB"), _r("AB"), _r("BA"), _r("BC"), _r("CA")]
    comps = [Comparison(r_[0], r_[1]) for r_ in ["AB", "AB", "BA", "BC", "CA"]]
    pl, bt = plackett_luce(rankings), bradley_terry(comps)
    for c in "ABC":
        assert pl[c] == pytest.approx(bt[c], abs=1e-6)


def test_consensus_of_and_subset() -> None:
    recs = [
        ranking("p1", "a", ["x", "y", "z"]),
        ranking("p1", "b", ["x", "z", "y"]),
        ranking("p1", "c", ["x", "y", "z"]),
        ranking("p1", "ai", ["z", "y", "x"], is_ai=True),
        ranking("p2", "a", ["u", "v"]),
    ]
    sub = consensus_subset(recs)
    assert list(sub) == ["p1"]  # p2 has one human ranking
    c = sub["p1"]
    assert c.order == ["x", "y", "z"] and c.n_rankings == 3  # the AI ranking is not part of it
    assert c.bradley_terry["x"] > c.bradley_terry["y"] > c.bradley_terry["z"]
    assert c.plackett_luce["x"] > c.plackett_luce["y"] > c.plackett_luce["z"]
    assert consensus_of("p", [_r("AB")]).to_dict()["order"] == ["A", "B"]
