"""Hand-computed checks of the policy-training math in worker.training.policy.common."""

from __future__ import annotations

import math

import pytest
import torch

from worker.training.policy.batching import global_minibatches
from worker.training.policy.common import (
    AdaptiveKLController,
    clipped_policy_loss,
    clipped_value_loss,
    dpo_loss,
    entropy_from_logits,
    gae,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
    per_token_kl,
    ranking_pairs,
    rloo_advantages,
)


def test_gae_matches_hand_computation() -> None:
    # gamma=1, lam=0.5; the third token is padding and must not contribute.
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.25, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # t=1: delta = 1 + 0 - 0.25 = 0.75 -> A1 = 0.75
    # t=0: delta = 0 + 0.25 - 0.5 = -0.25 -> A0 = -0.25 + 0.5 * 0.75 = 0.125
    assert torch.allclose(adv, torch.tensor([[0.125, 0.75, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.625, 1.0, 0.0]]))


def test_gae_gamma_discount() -> None:
    adv, _ = gae(torch.tensor([[0.0, 2.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.5, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[1.0, 2.0]]))


def test_masked_whiten_and_mean() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    w = masked_whiten(x, mask)
    # mean 2, unbiased variance 1 -> (-1, 0, 1); masked entry zeroed.
    assert torch.allclose(w, torch.tensor([-1.0, 0.0, 1.0, 0.0]), atol=1e-6)
    w2 = masked_whiten(x, mask, shift_mean=False)
    assert torch.allclose(w2, torch.tensor([1.0, 2.0, 3.0, 0.0]), atol=1e-6)


def test_clipped_policy_loss() -> None:
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    out = clipped_policy_loss(new, old, adv, torch.ones(1, 3), clip=0.2)
    # token0: ratio 1.5, A=1 -> max(-1.5, -1.2) = -1.2 (clipped)
    # token1: ratio 0.5, A=1 -> max(-0.5, -0.8) = -0.5 (not clipped: pessimistic branch is the unclipped one)
    # token2: ratio 1.1, A=-2 -> max(2.2, 2.2) = 2.2
    assert torch.allclose(out.per_token, torch.tensor([[-1.2, -0.5, 2.2]]), atol=1e-6)
    assert out.clip_frac.item() == pytest.approx(1 / 3)
    expected_kl = sum(0.5 * math.log(r) ** 2 for r in (1.5, 0.5, 1.1)) / 3
    assert out.approx_kl.item() == pytest.approx(expected_kl, rel=1e-5)


def test_clipped_value_loss() -> None:
    values = torch.tensor([[1.0, 0.1]])
    old = torch.tensor([[0.0, 0.0]])
    returns = torch.tensor([[0.0, 1.0]])
    loss, frac = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token0: unclipped (1-0)^2=1, clipped v=0.2 -> 0.04; max=1 -> 0.5
    # token1: unclipped (0.1-1)^2=0.81, clipped v=0.1 (inside) -> 0.81 -> 0.405
    assert torch.allclose(loss, torch.tensor([[0.5, 0.405]]), atol=1e-6)
    assert frac.item() == 0.0
    loss, frac = clipped_value_loss(
        torch.tensor([[-1.0]]), torch.zeros(1, 1), torch.tensor([[1.0]]), torch.ones(1, 1)
    )
    # unclipped (−1−1)^2 = 4; clipped v=−0.2 -> 1.44; max = 4 -> 2.0
    assert loss.item() == pytest.approx(2.0)


def test_per_token_kl_estimators() -> None:
    logp = torch.log(torch.tensor([0.5, 0.2]))
    ref = torch.log(torch.tensor([0.25, 0.4]))
    k1 = per_token_kl(logp, ref, "k1")
    assert torch.allclose(k1, torch.tensor([math.log(2), math.log(0.5)]))
    k3 = per_token_kl(logp, ref, "k3")
    # r = ref/p: 0.5 -> (0.5-1) - log 0.5 ; 2 -> (2-1) - log 2
    assert torch.allclose(k3, torch.tensor([-0.5 + math.log(2), 1 - math.log(2)]), atol=1e-6)
    assert (k3 >= 0).all()
    with pytest.raises(ValueError):
        per_token_kl(logp, ref, "k9")


def test_rloo_baseline() -> None:
    rewards = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    adv = rloo_advantages(rewards, k=3)
    # group 1: 1-(2+6)/2=-3, 2-(1+6)/2=-1.5, 6-(1+2)/2=4.5 ; group 2: -1.5, -1.5, 3
    assert torch.allclose(adv, torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]))
    with pytest.raises(ValueError):
        rloo_advantages(rewards, k=1)


def test_dpo_loss() -> None:
    out = dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5
    )
    # chosen reward 0.5*(1) = 0.5 ; rejected 0.5*(-1) = -0.5 ; loss = -log sigmoid(1)
    assert out.chosen_rewards.item() == pytest.approx(0.5)
    assert out.rejected_rewards.item() == pytest.approx(-0.5)
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-1.0)))


def test_ranking_pairs_skip_ties() -> None:
    assert sorted(ranking_pairs([2, 1, 2, 3])) == [(0, 3), (1, 0), (1, 2), (1, 3), (2, 3)]


def test_logprobs_and_entropy() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert logprobs_from_logits(logits, torch.tensor([1])).item() == pytest.approx(math.log(0.25))
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert entropy_from_logits(logits).item() == pytest.approx(h)


def test_adaptive_kl_controller() -> None:
    ctl = AdaptiveKLController(0.1, target=1.0, horizon=10)
    ctl.update(current_kl=5.0, n_steps=1)  # error clipped to +0.2 -> 0.1 * 1.02
    assert ctl.value == pytest.approx(0.102)
    ctl.update(current_kl=0.9, n_steps=1)  # error -0.1 -> * 0.99
    assert ctl.value == pytest.approx(0.102 * 0.99)


def test_global_minibatches_split_one_process_minibatches_across_ranks() -> None:
    k, local_rows, world = 3, 6, 2  # 2 prompts x 3 samples per rank, 4 prompts in all
    perm = torch.randperm(local_rows * world, generator=torch.Generator().manual_seed(0))
    single = global_minibatches(local_rows * world, k, 0, 1, 5, perm)
    assert [m.tolist() for m in single] == [perm[i:i + 5].tolist() for i in (0, 5, 10)]
    shares = [global_minibatches(local_rows, k, rank, world, 5, perm) for rank in range(world)]
    for j, one_process in enumerate(single):
        together = []
        for rank in range(world):
            r = shares[rank][j]
            together += (((r // k) * world + rank) * k + r % k).tolist()  # back to global row ids
        assert sorted(together) == sorted(one_process.tolist())
    # Without a permutation and minibatch size, one minibatch of all local rows.
    assert [m.tolist() for m in global_minibatches(local_rows, k, 1, world, None, None)] == [[0, 1, 2, 3, 4, 5]]
