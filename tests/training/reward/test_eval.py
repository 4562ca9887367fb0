"""Honest evaluation: ties count half, identical pairs are excluded and counted, intervals, length baseline,
accuracy by length difference; and `rm eval` reports them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.commands.rm import cli
from worker.training.groups import RankingGroup
from worker.training.reward import RewardTrainConfig, pairwise_metrics, train_reward_model
from worker.training.reward.eval import clustered_interval, length_bin, wilson_interval

from .conftest import planted_groups


def _pair(chosen: str, rejected: str, pid: str) -> RankingGroup:
    return RankingGroup(prompt="p", completions=[chosen, rejected], ranks=[1, 2], prompt_id=pid)


def test_ties_count_half_and_identical_pairs_are_excluded() -> None:
    groups = [_pair("good answer", "bad", "a"), _pair("tie one", "tie two", "b"), _pair("same", "same", "c"),
              _pair("wrong", "right one", "d")]
    m = pairwise_metrics(groups, [[2.0, 1.0], [0.5, 0.5], [0.0, 0.0], [0.0, 1.0]])
    assert m["n_pairs"] == 3 and m["n_identical_excluded"] == 1 and m["n_ties"] == 1
    assert m["accuracy"] == pytest.approx((1 + 0.5 + 0) / 3)
    # Longer wins in pair a, loses in d, ties in b (7 == 7 characters): 1.5 / 3, same rules.
    assert m["length_baseline"]["accuracy"] == pytest.approx(0.5)
    lo, hi = m["accuracy_ci95"]
    assert 0.0 <= lo < m["accuracy"] < hi <= 1.0
    everything_identical = pairwise_metrics([_pair("x", "x", "a")], [[1.0, 0.0]])
    assert everything_identical["n_pairs"] == 0 and everything_identical["n_identical_excluded"] == 1
    assert math.isnan(everything_identical["accuracy"])


def test_a_ranking_with_an_identical_pair_keeps_its_other_pairs() -> None:
    group = RankingGroup(prompt="p", completions=["a", "b", "a"], ranks=[1, 2, 3], prompt_id="x")
    m = pairwise_metrics([group], [[3.0, 2.0, 1.0]])
    assert m["n_identical_excluded"] == 1 and m["n_pairs"] == 2 and m["accuracy"] == 1.0


def test_intervals() -> None:
    lo, hi = wilson_interval(80, 100)
    assert lo == pytest.approx(0.7112, abs=1e-3) and hi == pytest.approx(0.8666, abs=1e-3)
    # Pairs of one prompt move together: ten prompts all right or all wrong is less evidence than 100 pairs.
    clustered = clustered_interval([(10.0, 10)] * 8 + [(0.0, 10)] * 2)
    assert clustered[1] - clustered[0] > hi - lo
    spread = clustered_interval([(8.0, 10)] * 10)
    assert spread == (pytest.approx(0.8), pytest.approx(0.8))  # every prompt at 80 %: no between-prompt spread


def test_accuracy_by_length_difference() -> None:
    assert length_bin("a" * 100, "a" * 20) == "chosen longer by >50%"
    assert length_bin("a" * 20, "a" * 21) == "within 10%"
    assert length_bin("a" * 70, "a" * 100) == "chosen shorter by 10-50%"
    groups = [_pair("a" * 100, "b" * 10, "a"), _pair("c" * 10, "d" * 100, "b")]
    m = pairwise_metrics(groups, [[1.0, 0.0], [1.0, 0.0]])
    assert m["accuracy_by_length_difference"] == {"chosen shorter by >50%": {"n": 1, "accuracy": 1.0},
                                                  "chosen longer by >50%": {"n": 1, "accuracy": 1.0}}
    assert m["length_baseline"]["accuracy"] == 0.5


def test_rm_eval_reports_interval_baseline_and_identical_pairs(tiny_reward_dir: Path, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=str(tiny_reward_dir), lr=3e-3, epochs=2, batch_prompts=8)
    train_reward_model(config, planted_groups(64), None, tmp_path / "rm")
    records = [{"prompt": g.prompt, "chosen": g.completions[g.ranks.index(1)],
                "rejected": g.completions[g.ranks.index(2)]} for g in planted_groups(20, seed=2, prefix="e")]
    records.append({"prompt": "Prompt: same?", "chosen": " apple river", "rejected": " apple river"})
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records))
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "rm"), str(data)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_pairs"] == 20 and report["n_identical_excluded"] == 1
    assert report["accuracy_ci95"][0] <= report["accuracy"] <= report["accuracy_ci95"][1]
    assert 0.0 <= report["length_baseline"]["accuracy"] <= 1.0 and "calibration" in report
    assert report["truncation"]["pairs_cut"] == 0
    assert "length-only baseline" in result.stderr and "1 identical excluded" in result.stderr


def test_calibrated_loss_ignores_the_reward_scale() -> None:
    groups = [_pair("good", "bad", "a"), _pair("fine", "poor", "b"), _pair("nice", "meh", "c")]
    rewards = [[1.0, 0.0], [0.4, 0.0], [0.0, 0.3]]  # two right, one wrong
    m1 = pairwise_metrics(groups, rewards)
    m10 = pairwise_metrics(groups, [[10 * x for x in r] for r in rewards])
    assert m10["loss"] > m1["loss"] + 0.3  # the plain loss punishes confidence
    assert m10["calibrated_loss"] == pytest.approx(m1["calibrated_loss"], abs=1e-6)
    assert m10["calibration_scale"] == pytest.approx(m1["calibration_scale"] / 10, rel=1e-3)
    assert m1["calibrated_loss"] < math.log(2) and m1["calibrated_loss"] <= m1["loss"]
    reversed_order = pairwise_metrics(groups, [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert reversed_order["calibrated_loss"] == pytest.approx(math.log(2)) and reversed_order["calibration_scale"] == 0
