"""The ensemble option: several reward heads on one backbone, each fit on its own Poisson bootstrap of the
groups; the reward is their mean and their disagreement feeds active selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from worker.training.reward import ConfigError, RewardScorer, RewardTrainConfig, train_reward_model
from worker.training.reward.batching import collate, encode_groups, pad_rows
from worker.training.reward.model import RewardModule, load_reward_model
from worker.training.reward.train import bootstrap_weights, member_coefficients

from .conftest import planted_groups


def test_bootstrap_weights_are_seeded_poisson_counts_per_member() -> None:
    w = bootstrap_weights(4000, 3, seed=5)
    assert w.shape == (4000, 3)
    assert torch.equal(w, bootstrap_weights(4000, 3, seed=5))
    assert not torch.equal(w, bootstrap_weights(4000, 3, seed=6))
    assert torch.all(w == w.round()) and w.min() >= 0
    assert abs(float(w.mean()) - 1.0) < 0.05  # Poisson(1): each member sees the data at its usual weight
    assert not torch.equal(w[:, 0], w[:, 1])  # ... but not the same resample
    assert float((w == 0).float().mean()) == pytest.approx(0.368, abs=0.03)  # e^-1 of the groups left out


def test_member_coefficients_follow_the_pair_layout_of_collate(tiny_reward_dir: Path) -> None:
    _, tok = load_reward_model(tiny_reward_dir)
    groups = planted_groups(3, k=3)
    groups[1].ranks = [1, 1, 1]  # a group with only ties has no pairs
    encoded = encode_groups(groups, tok, 64)
    mb = collate(encoded, int(tok.pad_token_id))
    boot = torch.tensor([[1.0, 0.0], [5.0, 5.0], [2.0, 3.0]])
    coef = member_coefficients(mb.pair_coef, boot, [0, 1, 2], encoded)
    n0, n2 = len(encoded[0].pairs), len(encoded[2].pairs)
    assert coef.shape == (n0 + n2, 2) and len(encoded[1].pairs) == 0
    expected = torch.cat([mb.pair_coef[:n0, None] * torch.tensor([[1.0, 0.0]]),
                          mb.pair_coef[n0:, None] * torch.tensor([[2.0, 3.0]])]) / 2
    assert torch.allclose(coef, expected)


def test_an_ensemble_trains_saves_and_scores_as_the_mean_of_its_members(tiny_reward_dir: Path, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=str(tiny_reward_dir), lr=3e-3, epochs=3, batch_prompts=8, ensemble_heads=3)
    train, heldout = planted_groups(96), planted_groups(24, seed=1, prefix="h")
    result = train_reward_model(config, train, heldout, tmp_path / "o")
    assert result.metrics["heldout"]["accuracy"] >= 0.8
    saved = json.loads((tmp_path / "o" / "model" / "config.json").read_text())
    assert saved["reward_heads"] == 3

    scorer = RewardScorer(tmp_path / "o")
    assert scorer.heads == 3
    prompts = [g.prompt for g in heldout[:4] for _ in g.completions]
    texts = [c for g in heldout[:4] for c in g.completions]
    mean = torch.tensor(scorer.score(prompts, texts))
    members = torch.tensor(scorer.score_members(prompts, texts))
    assert members.shape == (len(texts), 3)
    assert torch.allclose(mean, members.mean(1) - scorer.bias, atol=1e-5)
    # Each member learned the preference, and they are not copies of one another.
    marked = torch.tensor(["wonderful" in t for t in texts])
    for h in range(3):
        assert members[marked, h].mean() > members[~marked, h].mean()
    centred = members - members.mean(0, keepdim=True)
    assert float((centred[:, 0] - centred[:, 1]).abs().max()) > 1e-3
    assert scorer.evaluate(heldout)["accuracy"] == pytest.approx(result.metrics["heldout"]["accuracy"])


def test_one_head_is_the_default_and_reads_the_same_either_way(tiny_reward_dir: Path) -> None:
    model, tok = load_reward_model(tiny_reward_dir)
    module = RewardModule(model).eval()
    assert module.heads == 1 and model.config.reward_heads == 1
    ids, mask = pad_rows([tok(" a b c")["input_ids"], tok(" d")["input_ids"]], int(tok.pad_token_id))
    with torch.no_grad():
        members = module(ids, mask, members=True)
        assert members.shape == (2, 1)
        assert torch.equal(module(ids, mask), members[:, 0])


def test_heads_are_range_checked() -> None:
    for bad in (0, 17):
        with pytest.raises(ConfigError, match="ensemble_heads"):
            RewardTrainConfig(base_model="x", ensemble_heads=bad)
