"""Agreement measures against hand-computed and published values."""

from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from app.quality.stats.agreement import (
    agreement_by_day,
    agreement_by_pair,
    kendall_tau_b,
    krippendorff_alpha,
    pairwise_agreement,
    project_agreement,
)
from tests.quality.quality_factories import ranking


def test_pairwise_agreement_strict() -> None:
    c = pairwise_agreement({"x": 1, "y": 2, "z": 3}, {"x": 1, "y": 3, "z": 2})
    assert (c.agree, c.total) == (2, 3)  # xy, xz agree; yz disagrees
    assert c.rate == pytest.approx(2 / 3)


def test_pairwise_agreement_skips_ties_and_unshared_items() -> None:
    c = pairwise_agreement({"x": 1, "y": 1, "z": 2, "w": 3}, {"x": 1, "y": 2, "z": 3})
    assert (c.agree, c.total) == (2, 2)  # xy tied in a -> not counted; w not in b
    assert pairwise_agreement({"x": 1, "y": 1}, {"x": 1, "y": 2}).rate is None


def test_kendall_tau_b_hand_values() -> None:
    assert kendall_tau_b({"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 1, "b": 3, "c": 2, "d": 4}) == pytest.approx(4 / 6)
    # ties: C=4, D=0, one pair tied in each -> 4 / sqrt(5 * 5)
    assert kendall_tau_b({"p": 1, "q": 1, "r": 2, "s": 3}, {"p": 1, "q": 2, "r": 2, "s": 3}) == pytest.approx(0.8)
    assert kendall_tau_b({"a": 1, "b": 1}, {"a": 1, "b": 2}) is None


def test_kendall_tau_b_matches_scipy_on_random_tied_rankings() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        k = int(rng.integers(3, 9))
        a, b = rng.integers(1, 4, k), rng.integers(1, 5, k)
        mine = kendall_tau_b(dict(enumerate(a.tolist())), dict(enumerate(b.tolist())))
        ref = stats.kendalltau(a, b, variant="b").statistic
        if np.isnan(ref):
            assert mine is None
        else:
            assert mine == pytest.approx(ref)


def test_krippendorff_alpha_hand_example_binary() -> None:
    units = {1: {"A": 1, "B": 1}, 2: {"A": 2, "B": 2}, 3: {"A": 1, "B": 2}}
    # o11 = o22 = 2, o12 = o21 = 1, n = 6; every metric gives 1 - 5 * 2 / 18 here
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(4 / 9)
    assert krippendorff_alpha(units, "nominal") == pytest.approx(4 / 9)


def test_krippendorff_alpha_hand_example_ordinal_three_values() -> None:
    units = {1: {"A": 1, "B": 2}, 2: {"A": 3, "B": 3}, 3: {"A": 1, "B": 1}, 4: {"A": 2}}
    # n1 = 3, n2 = 1, n3 = 2 (unit 4 is unpairable); d12 = (4 - 2)^2 = 4, d13 = (6 - 2.5)^2 = 12.25,
    # d23 = (3 - 1.5)^2 = 2.25; observed 2 * 4 = 8; expected 2 * (12 + 73.5 + 4.5) = 180
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(1 - 5 * 8 / 180)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1..5 with missing data; published alpha nominal .743, ordinal .815,
# interval .849, ratio .797.
_PUBLISHED = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


@pytest.mark.parametrize(
    ("metric", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_alpha_published_example(metric: str, expected: float) -> None:
    units: dict[int, dict[str, float]] = {}
    for coder, vals in _PUBLISHED.items():
        for u, v in enumerate(vals):
            if v is not None:
                units.setdefault(u, {})[coder] = v
    assert krippendorff_alpha(units, metric) == pytest.approx(expected, abs=5e-4)  # type: ignore[arg-type]


def test_krippendorff_alpha_degenerate() -> None:
    assert krippendorff_alpha({1: {"A": 1}}) is None
    assert krippendorff_alpha({1: {"A": 2, "B": 2}, 2: {"A": 2, "B": 2}}) is None


def _fixture() -> list:
    return [
        ranking("p1", "ann1", ["a", "b", "c"]),
        ranking("p1", "ann2", ["a", "c", "b"]),
        ranking("p1", "ann3", ["a", "b", "c"]),
        ranking("p2", "ann1", ["x", "y"]),
        ranking("p2", "ann2", ["y", "x"]),
        ranking("p3", "ann1", ["m", "n"]),  # single ranker: not multi
    ]


def test_project_agreement_pools_pairs_and_excludes_ai() -> None:
    recs = _fixture()
    s = project_agreement(recs)
    # p1: (1,2) 2/3, (1,3) 3/3, (2,3) 2/3; p2: 0/1 -> 7/10
    assert s.pairwise_agreement == pytest.approx(7 / 10)
    assert s.n_prompts_multi == 2 and s.n_pairs == 4
    taus = [1 / 3, 1.0, 1 / 3, -1.0]
    assert s.kendall_tau_b == pytest.approx(np.mean(taus))
    with_ai = [*recs, ranking("p1", "gpt", ["c", "b", "a"], is_ai=True), ranking("p3", "gpt", ["n", "m"], is_ai=True)]
    assert project_agreement(with_ai) == s


def test_agreement_by_pair() -> None:
    pairs = agreement_by_pair(_fixture())
    assert set(pairs) == {("ann1", "ann2"), ("ann1", "ann3"), ("ann2", "ann3")}
    assert pairs[("ann1", "ann2")].pairwise_agreement == pytest.approx(2 / 4)
    assert pairs[("ann1", "ann3")].pairwise_agreement == 1.0
    assert pairs[("ann1", "ann3")].krippendorff_alpha == pytest.approx(1.0)
    assert pairs[("ann1", "ann2")].n_prompts_multi == 2


def test_agreement_by_day() -> None:
    d1, d2 = datetime(2025, 3, 1, 10, tzinfo=UTC), datetime(2025, 3, 2, 10, tzinfo=UTC)
    recs = [
        ranking("p1", "a", ["x", "y", "z"], created_at=d1),
        ranking("p1", "b", ["x", "y", "z"], created_at=d1),
        ranking("p2", "a", ["x", "y", "z"], created_at=d2),
        ranking("p2", "b", ["z", "y", "x"], created_at=d2),
    ]
    days = agreement_by_day(recs)
    assert [d.isoformat() for d in days] == ["2025-03-01", "2025-03-02"]
    assert days[d1.date()].pairwise_agreement == 1.0
    assert days[d2.date()].pairwise_agreement == 0.0
    assert days[d2.date()].kendall_tau_b == pytest.approx(-1.0)
