"""DDP equivalence: 2 CPU ranks (gloo, launched with torchrun) match 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.training.reward import RewardScorer, RewardTrainConfig, train_reward_model

from .conftest import planted_groups
from .ddp_job import VALIDATION

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tiny_reward_dir: Path, tmp_path: Path) -> None:
    # 41 groups with 8 per step: the last step has one group, so one rank runs the zero-weight pass.
    n_groups = 41
    config = RewardTrainConfig(
        base_model=str(tiny_reward_dir), lr=3e-3, epochs=2, batch_prompts=8, token_budget=200, seed=5
    )
    single = train_reward_model(config, planted_groups(n_groups), planted_groups(24, seed=1, prefix="h"), tmp_path / "one")

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "tests.training.reward.ddp_job", str(tiny_reward_dir), str(tmp_path / "two"), str(n_groups),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "two" / "metrics.json").read_text())

    assert ddp["world_size"] == 2 and single.metrics["world_size"] == 1
    assert len(ddp["loss_curve"]) == len(single.metrics["loss_curve"])
    assert ddp["loss_curve"] == pytest.approx(single.metrics["loss_curve"], rel=1e-3, abs=1e-4)
    assert ddp["heldout"]["accuracy"] == pytest.approx(single.metrics["heldout"]["accuracy"], abs=0.01)
    assert ddp["reward_bias"] == pytest.approx(single.metrics["reward_bias"], abs=1e-3)
    # Rank 0 wrote one complete, loadable checkpoint.
    scorer = RewardScorer(tmp_path / "two")
    assert scorer.meta["metrics"]["world_size"] == 2


@pytest.mark.slow
def test_two_ranks_validate_and_select_like_one_process(tiny_reward_dir: Path, tmp_path: Path) -> None:
    n_groups = 41
    config = RewardTrainConfig(base_model=str(tiny_reward_dir), lr=3e-3, epochs=2, batch_prompts=8, token_budget=200,
                               seed=5, **VALIDATION)  # type: ignore[arg-type]
    single = train_reward_model(config, planted_groups(n_groups), planted_groups(24, seed=1, prefix="h"), tmp_path / "one")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "tests.training.reward.ddp_job", str(tiny_reward_dir), str(tmp_path / "two"), str(n_groups), "validate",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one, two = single.metrics["validation"], ddp["validation"]
    assert one["n_groups"] == two["n_groups"] == 8
    assert [p["step"] for p in two["curve"]] == [p["step"] for p in one["curve"]]
    assert [p["loss"] for p in two["curve"]] == pytest.approx([p["loss"] for p in one["curve"]], rel=1e-3, abs=1e-4)
    assert two["best_step"] == one["best_step"]
    assert ddp["heldout"]["accuracy"] == pytest.approx(single.metrics["heldout"]["accuracy"], abs=0.01)
    assert not (tmp_path / "two" / "best").exists() and RewardScorer(tmp_path / "two").meta["metrics"]["world_size"] == 2
