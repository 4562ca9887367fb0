"""Model selection on the validation split: early stopping, and the final checkpoint holds the best weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.training.groups import RankingGroup
from worker.training.reward import RewardScorer, RewardTrainConfig, train_reward_model
from worker.training.reward.train import validation_split

from .conftest import planted_groups


def _flipped(g: RankingGroup) -> RankingGroup:
    worst = max(g.ranks)
    return RankingGroup(prompt=g.prompt, completions=g.completions, ranks=[worst + 1 - r for r in g.ranks],
                        prompt_id=g.prompt_id)


def test_early_stopping_keeps_the_best_checkpoint(tiny_reward_dir: Path, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=str(tiny_reward_dir), lr=3e-3, epochs=6, batch_prompts=8, eval_every=2,
                               patience=3, val_fraction=0.2, select_on="loss")
    groups = planted_groups(60)
    _, val = validation_split(groups, config)
    val_ids = {g.prompt_id for g in val}
    assert len(val) == 12
    # The validation prompts prefer the opposite of what the rest teaches: the more the model learns,
    # the worse it does there, so the best weights are early ones and patience runs out.
    data = [_flipped(g) if g.prompt_id in val_ids else g for g in groups]
    result = train_reward_model(config, data, None, tmp_path / "o")
    v = result.metrics["validation"]
    losses = {p["step"]: p["loss"] for p in v["curve"]}
    assert v["best_step"] == min(losses, key=losses.__getitem__)
    assert v["stopped_early_at_step"] is not None and v["stopped_early_at_step"] < result.metrics["total_steps"]
    # Stopped at the first pass that is `patience` (3) passes of 2 steps past the best and a third into the plan.
    total = result.metrics["total_steps"]
    expected = next(s for s in range(2, total + 1, 2) if s >= v["best_step"] + 3 * 2 and s >= total / 3)
    assert v["stopped_early_at_step"] == expected == result.metrics["steps"]
    last = v["curve"][-1]
    assert last["loss"] > v["best_loss"] + 0.01  # the last weights are measurably worse than the kept ones
    assert not (tmp_path / "o" / "best").exists()
    kept = RewardScorer(result.checkpoint).evaluate([g for g in data if g.prompt_id in val_ids])  # type: ignore[arg-type]
    assert kept["loss"] == pytest.approx(v["best_loss"], abs=1e-4)


def test_validation_is_taken_by_prompt_from_training_data_only() -> None:
    config = RewardTrainConfig(base_model="x", val_fraction=0.25)
    groups = planted_groups(40) + planted_groups(40, seed=3)  # two rankings of each prompt id q0..q39
    fit, val = validation_split(groups, config)
    assert len(fit) + len(val) == 80 and {g.prompt_id for g in fit}.isdisjoint({g.prompt_id for g in val})
    assert validation_split(planted_groups(30), config) == (planted_groups(30), [])  # 30 x 0.25 < 10 groups


def test_resume_keeps_the_validation_curve(tiny_reward_dir: Path, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=str(tiny_reward_dir), lr=3e-3, epochs=2, batch_prompts=8, eval_every=2,
                               patience=0, checkpoint_every=2)
    data = planted_groups(100)
    full = train_reward_model(config, data, None, tmp_path / "full")
    calls = iter(range(100))
    stopped = train_reward_model(config, data, None, tmp_path / "split", should_stop=lambda: next(calls) == 5)
    assert stopped.stopped
    resumed = train_reward_model(config, data, None, tmp_path / "split")
    a, b = full.metrics["validation"], resumed.metrics["validation"]
    assert [p["step"] for p in a["curve"]] == [p["step"] for p in b["curve"]]
    assert [p["loss"] for p in a["curve"]] == pytest.approx([p["loss"] for p in b["curve"]], abs=1e-5)
    assert a["best_step"] == b["best_step"] and a["stopped_early_at_step"] is None
