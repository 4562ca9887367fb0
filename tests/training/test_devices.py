"""Typed device helpers: they return the module they were given, moved (and, for `frozen`, frozen)."""

from __future__ import annotations

import torch
from torch import nn

from worker.training.devices import frozen, to_device


def test_to_device_moves_the_module_in_place() -> None:
    module = nn.Linear(2, 1)
    moved = to_device(module, torch.device("meta"))
    assert moved is module
    assert module.weight.device.type == "meta"
    assert module.training  # moving leaves the mode alone
    assert module.weight.requires_grad


def test_frozen_is_eval_mode_without_gradients() -> None:
    module = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    out = frozen(module, "cpu")
    assert out is module
    assert not any(m.training for m in module.modules())
    assert not any(p.requires_grad for p in module.parameters())
    x = torch.ones(1, 2)
    assert torch.equal(module(x), module(x))  # dropout is off
