"""Helper run by torchrun in test_reward_ddp.py: trains on planted data and writes the metrics as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from tests.training.reward.conftest import planted_groups
from worker.training.reward import RewardTrainConfig, train_reward_model

# A validation split with early stopping off, so one process and two ranks must select the same step.
VALIDATION = {"val_fraction": 0.2, "val_min_groups": 4, "eval_every": 2, "patience": 0, "select_on": "loss"}


def main() -> None:
    base, out, n_groups = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    config = RewardTrainConfig(base_model=base, lr=3e-3, epochs=2, batch_prompts=8, token_budget=200, seed=5,
                               **(VALIDATION if sys.argv[4:] == ["validate"] else {}))
    result = train_reward_model(config, planted_groups(n_groups), planted_groups(24, seed=1, prefix="h"), out)
    if int(os.environ.get("RANK", "0")) == 0:
        (out / "metrics.json").write_text(json.dumps(result.metrics))


if __name__ == "__main__":
    main()
