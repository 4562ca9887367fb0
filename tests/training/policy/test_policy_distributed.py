"""A 2-process gloo run (each rank half of every batch) equals a 1-process run on the full batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.training.policy.test_policy_offline import _demos, _groups
from worker.training.policy import PolicyTrainConfig, train_policy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(algorithm: str) -> PolicyTrainConfig:
    return PolicyTrainConfig(
        algorithm=algorithm, steps=3, batch_size=4, learning_rate=1e-3, save_every=1000, micro_batch_size=1
    )


def _worker(rank: int, world: int, port: int, policy: str, out: str, algorithm: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train_policy(
            _config(algorithm),
            policy_path=policy,
            output_dir=out,
            demonstrations=_demos(16, 1),
            groups=_groups(8, 2),
            device="cpu",
        )
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_matches_single_process(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    for algorithm in ("sft", "dpo"):
        single = train_policy(
            _config(algorithm),
            policy_path=tiny_models["policy"],
            output_dir=tmp_path / f"{algorithm}1",
            demonstrations=_demos(16, 1),
            groups=_groups(8, 2),
            device="cpu",
        )
        out2 = tmp_path / f"{algorithm}2"
        mp.spawn(_worker, args=(2, _free_port(), str(tiny_models["policy"]), str(out2), algorithm), nprocs=2)
        assert single.checkpoint is not None
        a = load_file(str(single.checkpoint / "model.safetensors"))
        b = load_file(str(out2 / "policy" / "model.safetensors"))
        moved = max(
            float((a[k] - load_file(str(tiny_models["policy"] / "model.safetensors"))[k]).abs().max())
            for k in a
        )
        assert moved > 1e-4  # training really changed the weights
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4)
