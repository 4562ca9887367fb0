"""The K-wise loss against the InstructGPT formula, and one forward per completion per step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from worker.training.groups import RankingGroup
from worker.training.reward import RewardTrainConfig, train_reward_model
from worker.training.reward.batching import EncodedGroup, collate
from worker.training.reward.loss import group_losses, kwise_loss_sum, weighted_mean_loss

from .conftest import planted_groups


def _nll(margin: float) -> float:
    return math.log1p(math.exp(-margin))  # -log sigmoid(margin)


def _encoded(ranks: list[int], weight: float = 1.0) -> EncodedGroup:
    g = RankingGroup(prompt="p", completions=[f"c{i}" for i in range(len(ranks))], ranks=ranks, weight=weight)
    return EncodedGroup(input_ids=[[5 + i] for i in range(len(ranks))], pairs=g.pairs(), weight=weight)


def test_loss_matches_hand_computed_instructgpt_formula_with_ties() -> None:
    rewards = [2.0, 0.5, -1.0, 0.5]
    ranks = [1, 2, 3, 2]  # completions 1 and 3 are tied: 5 comparable pairs, not C(4,2) = 6
    expected = (
        _nll(2.0 - 0.5) + _nll(2.0 + 1.0) + _nll(2.0 - 0.5) + _nll(0.5 + 1.0) + _nll(0.5 + 1.0)
    ) / 5
    mb = collate([_encoded(ranks)], pad_id=0)
    got = kwise_loss_sum(torch.tensor(rewards), mb.win, mb.lose, mb.pair_coef)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    group = RankingGroup(prompt="p", completions=["a", "b", "c", "d"], ranks=ranks)
    assert group_losses([rewards], [group])[0] == pytest.approx(expected, rel=1e-9)


def test_no_ties_normalises_by_k_choose_2_and_groups_average_by_weight() -> None:
    r1 = [1.0, 0.0, -0.5]  # K=3, strict order: C(3,2) = 3 pairs
    l1 = (_nll(1.0) + _nll(1.5) + _nll(0.5)) / 3
    r2 = [0.2, 0.7]  # a pair the model gets wrong
    l2 = _nll(-0.5)
    mb = collate([_encoded([1, 2, 3], weight=2.0), _encoded([1, 2], weight=0.5)], pad_id=0)
    total = kwise_loss_sum(torch.tensor(r1 + r2), mb.win, mb.lose, mb.pair_coef)
    assert (total / 2.5).item() == pytest.approx((2.0 * l1 + 0.5 * l2) / 2.5, rel=1e-6)
    groups = [
        RankingGroup(prompt="p", completions=["a", "b", "c"], ranks=[1, 2, 3], weight=2.0),
        RankingGroup(prompt="q", completions=["a", "b"], ranks=[1, 2], weight=0.5),
    ]
    assert weighted_mean_loss([r1, r2], groups) == pytest.approx((2.0 * l1 + 0.5 * l2) / 2.5, rel=1e-9)


def test_rank_gap_weighting_weights_pairs_by_gap() -> None:
    rewards = [0.3, 0.1, -0.4]
    expected = (1 * _nll(0.2) + 2 * _nll(0.7) + 1 * _nll(0.5)) / 4  # gaps 1, 2, 1
    mb = collate([_encoded([1, 2, 3])], pad_id=0, rank_gap_weighting=True)
    got = kwise_loss_sum(torch.tensor(rewards), mb.win, mb.lose, mb.pair_coef)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_all_tied_group_contributes_nothing() -> None:
    mb = collate([_encoded([1, 2]), EncodedGroup(input_ids=[[1], [2]], pairs=[], weight=1.0)], pad_id=0)
    got = kwise_loss_sum(torch.tensor([1.0, 0.0, 5.0, -5.0]), mb.win, mb.lose, mb.pair_coef)
    assert got.item() == pytest.approx(_nll(1.0), rel=1e-6)


def test_each_completion_is_forwarded_once_per_step(tiny_reward_dir: Path, tmp_path: Path) -> None:
    groups = planted_groups(16, k=6)  # two optimizer steps of 8 groups
    rows: list[int] = []

    def count(module: torch.nn.Module, args: tuple[object, ...], kwargs: dict[str, object], out: object) -> None:
        if type(module).__name__ == "LlamaModel":
            ids = kwargs.get("input_ids", args[0] if args else None)
            assert isinstance(ids, torch.Tensor)
            rows.append(ids.shape[0])

    calls = iter([False, True])  # run exactly one optimizer step, then stop
    handle = torch.nn.modules.module.register_module_forward_hook(count, with_kwargs=True)
    try:
        result = train_reward_model(
            RewardTrainConfig(base_model=str(tiny_reward_dir), batch_prompts=8, token_budget=10_000),
            groups, None, tmp_path / "out", should_stop=lambda: next(calls),
        )
    finally:
        handle.remove()
    assert result.stopped
    assert sum(rows) == 6 * 8  # K per group of the step ...
    assert sum(rows) < 2 * 8 * min(len(g.pairs()) for g in groups)  # ... far fewer than 2 per pair


def test_token_budget_splits_by_whole_groups(tiny_reward_dir: Path, tmp_path: Path) -> None:
    from worker.training.reward.batching import pack_micro_batches

    groups = [EncodedGroup(input_ids=[[1] * n] * 4, pairs=[(0, 1, 1)], weight=1.0) for n in (30, 10, 25, 5, 12)]
    batches = pack_micro_batches(groups, token_budget=200)
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    for b in batches:
        rows = 4 * len(b)
        assert len(b) == 1 or rows * max(groups[i].max_len for i in b) <= 200
