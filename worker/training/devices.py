"""Moving (and freezing) modules on a device without losing their static type; bf16 autocast.

transformers wraps `PreTrainedModel.to` with `functools.wraps(nn.Module.to)`, which type checkers cannot
bind as a method, and leaves `PreTrainedModel.eval` unannotated. Going through a parameter typed by its
`nn.Module` bound keeps `Module`'s signatures (and their `Self` returns) while the model's own methods
still run.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def to_device(module: ModuleT, device: torch.device | str) -> ModuleT:
    """`module.to(device)`: the same module, moved in place and returned."""
    return module.to(device)


def frozen(module: ModuleT, device: torch.device | str) -> ModuleT:
    """`module` in eval mode with gradients off, moved to `device` (a reference model nobody trains)."""
    return module.eval().requires_grad_(False).to(device)


def bf16_autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when `enabled` (weights stay fp32); a no-op context otherwise and on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
