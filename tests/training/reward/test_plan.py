"""The step/epoch rule: automatic batch, epochs, lr and warmup follow the data; explicit values and caps win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.training.reward import RewardTrainConfig, train_reward_model
from worker.training.reward.plan import auto_lr, make_plan

from .conftest import planted_groups

TINY, MINILM, BIG = 400_000, 22_700_000, 7_000_000_000


def _plan(n: int, params: int = MINILM, **kw: object):  # type: ignore[no-untyped-def]
    return make_plan(RewardTrainConfig(base_model="x", **kw), n, params)  # type: ignore[arg-type]


def test_small_data_gets_small_batches_and_more_passes() -> None:
    plan = _plan(100)
    assert plan.batch_prompts == 8 and plan.steps_per_epoch == 13
    assert plan.epochs == 10 and plan.total_steps == 130  # the step floor (200) is out of reach: max_epochs
    assert plan.warmup_steps == round(0.05 * 130) and plan.lr == pytest.approx(auto_lr(MINILM))
    assert set(plan.chosen.values()) == {"auto"}


def test_the_step_floor_sets_the_epochs_when_it_can() -> None:
    plan = _plan(3000)
    assert plan.batch_prompts == 64 and plan.steps_per_epoch == 47
    assert plan.total_steps == 200 and 4 < plan.epochs < 5


def test_large_data_keeps_the_instructgpt_recipe() -> None:
    plan = _plan(50_000, BIG)
    assert plan.batch_prompts == 64 and plan.epochs == 1 and plan.total_steps == 782
    assert plan.lr == 1e-5


def test_batch_never_exceeds_the_groups() -> None:
    plan = _plan(3)
    assert plan.batch_prompts == 3 and plan.steps_per_epoch == 1 and plan.total_steps == 10


def test_explicit_settings_are_kept_and_max_steps_caps() -> None:
    plan = _plan(9, TINY, epochs=1, batch_prompts=2, lr=1e-3)
    assert (plan.batch_prompts, plan.steps_per_epoch, plan.epochs, plan.total_steps) == (2, 5, 1.0, 5)
    assert plan.lr == 1e-3 and plan.warmup_steps == 0  # an explicit lr keeps the caller's schedule
    assert plan.chosen["epochs"] == "set" and plan.chosen["lr"] == "set"
    capped = _plan(100, max_steps=12)
    assert capped.total_steps == 12 and "max_steps" in capped.chosen["epochs"]
    assert _plan(100, warmup_steps=3).warmup_steps == 3


def test_lr_follows_model_size_within_bounds() -> None:
    assert auto_lr(TINY) == 1e-4 and auto_lr(BIG) == 1e-5
    assert auto_lr(MINILM) == pytest.approx(1e-5 * (1e9 / MINILM) ** 0.5)
    assert auto_lr(125_000_000) < auto_lr(MINILM)


def test_plan_is_stored_in_meta_and_followed(tiny_reward_dir: Path, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=str(tiny_reward_dir), max_steps=6, lr=3e-3)
    result = train_reward_model(config, planted_groups(40), None, tmp_path / "o")
    meta = json.loads((tmp_path / "o" / "model" / "meta.json").read_text())
    assert meta["plan"]["total_steps"] == 6 and meta["plan"]["batch_prompts"] == 8
    assert meta["plan"]["chosen"]["batch_prompts"] == "auto" and meta["pooling"] == "last"
    assert len(result.metrics["loss_curve"]) == 6 == result.metrics["steps"]
    assert result.metrics["validation"]["n_groups"] == 0  # 40 groups x 0.1 < val_min_groups: no split
