"""Moving (and freezing) modules on a device without losing their static type.

transformers wraps `PreTrainedModel.to` with `functools.wraps(nn.Module.to)`, which type checkers cannot
bind as a method, and leaves `PreTrainedModel.eval` unannotated. Going through a parameter typed by its
`nn.Module` bound keeps `Module`'s signatures (and their `Self` returns) while the model's own methods
still run.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def to_device(module: ModuleT, device: torch.device | str) -> ModuleT:
    """`module.to(device)`: the same module, moved in place and returned."""
    return module.to(device)


def frozen(module: ModuleT, device: torch.device | str) -> ModuleT:
    """`module` in eval mode with gradients off, moved to `device` (a reference model nobody trains)."""
    return module.eval().requires_grad_(False).to(device)
