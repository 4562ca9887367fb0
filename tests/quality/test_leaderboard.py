"""Bradley-Terry leaderboard over models with bootstrap intervals."""

import math

import numpy as np
import pytest

from app.quality.stats.leaderboard import leaderboard
from tests.quality.quality_factories import ranking


def test_two_models_closed_form_on_elo_scale() -> None:
    mo = {"x": "m1", "y": "m2"}
    recs = [ranking(f"p{i}", "a", ["x", "y"], model_of=mo) for i in range(3)]
    recs.append(ranking("p9", "a", ["y", "x"], model_of=mo))
    rows = leaderboard(recs, l2=0.0, n_bootstrap=0)
    gap = 400 * math.log10(3)
    assert [r.name for r in rows] == ["m1", "m2"]
    assert rows[0].score == pytest.approx(gap / 2, abs=1e-4) and rows[1].score == pytest.approx(-gap / 2, abs=1e-4)
    assert rows[0].ci_low is None


def _simulate(seed: int) -> list:
    rng = np.random.default_rng(seed)
    strength = {"sft": 0.0, "ppo-v1": 0.7, "ppo-v2": 1.4, "base": -1.0}
    names = list(strength)
    out = []
    for p in range(150):
        models = rng.choice(names, size=3, replace=False)
        u = np.array([strength[m] for m in models]) + rng.gumbel(size=3)
        items = [f"p{p}-{m}" for m in models]
        order = [items[i] for i in np.argsort(-u)]
        out.append(ranking(f"p{p}", "h", order, model_of=dict(zip(items, models, strict=True))))
    # an AI ranking claiming "base" is best must not count
    out.append(ranking("px", "bot", ["b1", "b2"], is_ai=True, model_of={"b1": "base", "b2": "ppo-v2"}))
    return out


def test_recovers_model_order_with_seeded_bootstrap_intervals() -> None:
    recs = _simulate(0)
    rows = leaderboard(recs, n_bootstrap=100, seed=4)
    assert [r.name for r in rows] == ["ppo-v2", "ppo-v1", "sft", "base"]
    assert sum(r.score for r in rows) == pytest.approx(0.0, abs=1e-6)
    for r in rows:
        assert r.ci_low is not None and r.ci_high is not None and r.ci_low <= r.score <= r.ci_high
    assert rows[0].ci_low > rows[-1].ci_high  # best and worst are clearly apart
    assert leaderboard(recs, n_bootstrap=100, seed=4) == rows  # seeded: reproducible
    # true gap ppo-v2 vs base is 2.4 nats = 417 points; the estimate should be near
    assert rows[0].score - rows[-1].score == pytest.approx(2.4 * 400 / math.log(10), rel=0.3)


def test_weights_and_empty() -> None:
    mo = {"x": "m1", "y": "m2"}
    a, b = ranking("p", "a", ["x", "y"], model_of=mo), ranking("q", "b", ["y", "x"], model_of=mo)
    rows = leaderboard([a, b], weights={a.ranking_id: 1.0, b.ranking_id: 0.1}, n_bootstrap=0)
    assert rows[0].name == "m1"
    assert leaderboard([ranking("p", "a", ["x", "y"])]) == []
