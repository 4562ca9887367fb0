"""torch.distributed set-up and collectives shared by policy and reward training.

Both loops run in one process or under torchrun; `setup_distributed` joins the process group torchrun
describes (WORLD_SIZE > 1), gloo on CPU and nccl on CUDA, and the helpers below are no-ops outside one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from worker.training.sampling import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: world size, global and local rank, and whether it opened the group."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """True on rank 0 (the rank that writes files)."""
        return self.rank == 0


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def setup_distributed() -> DistInfo:
    """Join the torchrun process group when launched by torchrun; `owns_group` when this call opened it."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_world_size(), dist.get_rank(), _local_rank())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_world_size(), dist.get_rank(), _local_rank(), owns_group=True)


def dist_active() -> bool:
    """True when running under an initialised torch.distributed process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over all ranks (a no-op copy when not distributed)."""
    t = t.detach().clone()
    if dist_active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool) -> bool:
    """True when `flag` is true on any rank (so every rank stops together)."""
    return bool(all_reduce_sum(torch.tensor(float(flag))).item() > 0)


def barrier() -> None:
    """Wait for every rank (after rank 0 wrote something the others read); a no-op in one process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def device_for_rank(device: str | torch.device | None) -> torch.device:
    """The requested device (`resolve_device`); a bare CUDA device becomes this rank's GPU under DDP."""
    dev = resolve_device(device)
    if dev.type == "cuda" and dist.is_initialized() and dev.index is None:
        dev = torch.device("cuda", dist.get_rank() % torch.cuda.device_count())
    return dev


def local_rank_device(info: DistInfo) -> torch.device:
    """The GPU of this process's local rank (made current), else the CPU."""
    device = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device
