"""End-to-end reward-model training on CPU: learning a planted preference, resume, scorer, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from worker.training.checkpoint import verify_checkpoint
from worker.training.reward import (
    ConfigError,
    RewardScorer,
    RewardTrainConfig,
    score_texts,
    train_reward_model,
)

from .conftest import MARKER, planted_groups


def _config(base: Path, **kw: object) -> RewardTrainConfig:
    defaults: dict[str, object] = {"base_model": str(base), "lr": 3e-3, "epochs": 2, "batch_prompts": 8}
    defaults.update(kw)
    return RewardTrainConfig(**defaults)  # type: ignore[arg-type]


def test_learns_planted_preference_and_scorer_applies_bias(tiny_reward_dir: Path, tmp_path: Path) -> None:
    train, heldout = planted_groups(160), planted_groups(40, seed=1, prefix="h")
    seen: list[float] = []
    result = train_reward_model(_config(tiny_reward_dir), train, heldout, tmp_path / "out",
                                progress=lambda f, _msg: seen.append(f))
    assert result.checkpoint == tmp_path / "out" / "model"
    assert result.metrics["heldout"]["accuracy"] >= 0.9
    assert result.metrics["loss_curve"][-1] < result.metrics["loss_curve"][0]
    assert seen and seen[-1] == 1.0
    assert not (tmp_path / "out" / "state").exists()  # the finished checkpoint supersedes the resume state

    meta = verify_checkpoint(result.checkpoint)
    assert meta["config"]["lr"] == 3e-3 and "reward_bias" in meta and meta["metrics"]["train_groups"] == 160

    scorer = RewardScorer(tmp_path / "out")  # a training output dir resolves to its model/
    rewards = [r for g in scorer.score_groups(train) for r in g]
    assert abs(sum(rewards) / len(rewards)) < 1e-3  # bias shift: mean training reward is 0
    good, bad = score_texts(result.checkpoint, ["Prompt: hi.", "Prompt: hi."], [f" {MARKER} apple", " stone apple"])
    assert good > bad
    assert scorer.evaluate(heldout)["accuracy"] == pytest.approx(result.metrics["heldout"]["accuracy"])


def test_resume_after_interruption_equals_uninterrupted_run(tiny_reward_dir: Path, tmp_path: Path) -> None:
    train = planted_groups(48)
    config = _config(tiny_reward_dir, epochs=1, checkpoint_every=2, center_coef=0.05)
    full = train_reward_model(config, train, None, tmp_path / "full")

    steps_done = iter(range(100))
    stopped = train_reward_model(config, train, None, tmp_path / "split", should_stop=lambda: next(steps_done) == 3)
    assert stopped.stopped and stopped.checkpoint is None
    assert stopped.metrics["stopped_at_step"] == 3
    assert json.loads((tmp_path / "split" / "state" / "meta.json").read_text())["step"] == 3
    resumed = train_reward_model(config, train, None, tmp_path / "split")
    assert resumed.metrics["loss_curve"] == pytest.approx(full.metrics["loss_curve"], abs=1e-6)
    a = RewardScorer(full.checkpoint).module.state_dict()  # type: ignore[arg-type]
    b = RewardScorer(resumed.checkpoint).module.state_dict()  # type: ignore[arg-type]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_resume_refuses_changed_config(tiny_reward_dir: Path, tmp_path: Path) -> None:
    train = planted_groups(24)
    calls = iter(range(100))
    train_reward_model(_config(tiny_reward_dir), train, None, tmp_path / "o", should_stop=lambda: next(calls) == 1)
    with pytest.raises(Exception, match=r"config changed.*lr"):
        train_reward_model(_config(tiny_reward_dir, lr=1e-4), train, None, tmp_path / "o")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="batch_prompts"):
        RewardTrainConfig(base_model="x", batch_prompts=0)
    with pytest.raises(ConfigError, match="lr"):
        RewardTrainConfig(base_model="x", lr=float("nan"))
    with pytest.raises(ConfigError, match="unknown RewardTrainConfig field"):
        RewardTrainConfig.from_dict({"base_model": "x", "learning_rate": 1.0})
    cfg = RewardTrainConfig(base_model="x", rank_gap_weighting=True)
    assert RewardTrainConfig.from_dict(cfg.to_dict()) == cfg
