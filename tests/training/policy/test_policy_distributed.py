"""A 2-process gloo run (each rank half of every batch) equals a 1-process run on the full batch, for every
algorithm: SFT and DPO (fixed data), and RLOO and PPO, whose samples come from per-prompt random streams
(worker.training.streams), so a prompt is sampled the same on either rank count."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.training.policy.policy_helpers import make_prompts, vowel_reward
from tests.training.policy.test_policy_offline import _demos, _groups
from worker.training.policy import PolicyRun, PolicyTrainConfig, train_policy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROMPTS = make_prompts(12, seed=3)
HELDOUT = make_prompts(6, seed=4)


def _config(algorithm: str) -> PolicyTrainConfig:
    # RL: 4 prompts x 2 samples per step; PPO takes 2 epochs of 2 minibatches of 4 rows, drawn from one
    # global permutation (so a rank's share of a minibatch varies); no PPO-ptx (its batch is drawn per rank).
    return PolicyTrainConfig(
        algorithm=algorithm, steps=3, batch_size=4, learning_rate=1e-3, save_every=1000, micro_batch_size=1,
        rollout_batch_size=4, num_samples=2, max_new_tokens=8, missing_eos_penalty=None, eval_max_prompts=6,
        ppo_epochs=2 if algorithm == "ppo" else 1, minibatch_size=4 if algorithm == "ppo" else None,
    )


def _train(algorithm: str, policy: str | Path, out: str | Path):  # type: ignore[no-untyped-def]
    return train_policy(PolicyRun(
        _config(algorithm),
        policy_path=policy,
        output_dir=out,
        demonstrations=_demos(16, 1),
        groups=_groups(8, 2),
        prompts=PROMPTS,
        heldout_prompts=HELDOUT if algorithm in ("rloo", "ppo") else None,
        reward_fn=vowel_reward,
        device="cpu",
    ))


def _worker(rank: int, world: int, port: int, policy: str, out: str, algorithm: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = _train(algorithm, policy, out)
        if rank == 0:
            torch.save({"history": [{k: v for k, v in h.items() if isinstance(v, float)} for h in result.history],
                        "after": result.metrics.get("after", {})}, os.path.join(out, "figures.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("algorithm", ["sft", "dpo", "rloo", "ppo"])
def test_two_process_gloo_matches_single_process(tiny_models: dict[str, Path], tmp_path: Path,
                                                 algorithm: str) -> None:
    single = _train(algorithm, tiny_models["policy"], tmp_path / "one")
    out2 = tmp_path / "two"
    out2.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(tiny_models["policy"]), str(out2), algorithm), nprocs=2)
    assert single.checkpoint is not None
    start = load_file(str(tiny_models["policy"] / "model.safetensors"))
    a = load_file(str(single.checkpoint / "model.safetensors"))
    b = load_file(str(out2 / "policy" / "model.safetensors"))
    moved = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert moved > 1e-4  # training really changed the weights
    # RL runs take more Adam steps on gradients that pass through sampling, rewards and whitening; where a
    # gradient is ~0, Adam's normalisation turns float-summation-order noise into ~lr-sized differences.
    # A different sample anywhere would move thousands of weights by ~lr; allow a handful at 10 % of lr.
    atol = 2e-5 if algorithm in ("sft", "dpo") else 1e-4
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-4)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 0.05 * moved
    # The per-step figures (pooled over ranks) agree too: same samples, same rewards, same losses.
    figures = torch.load(out2 / "figures.pt")
    two = figures["history"]
    assert len(two) == len(single.history) == 3
    if algorithm in ("rloo", "ppo"):  # held-out evaluation: each rank samples its share of the prompts
        after = single.metrics["after"]
        assert after["prompts"] == 6
        for key in ("reward_mean", "kl", "response_length"):
            assert figures["after"][key] == pytest.approx(after[key], rel=1e-3, abs=1e-5), key
    for h1, h2 in zip(single.history, two, strict=True):
        for key in ("loss", "reward_mean", "kl", "response_length", "policy_loss", "value_loss"):
            if key in h1:
                assert h2[key] == pytest.approx(h1[key], rel=1e-3, abs=1e-5), (key, h1, h2)
