"""Turning dropout off, for training whose losses compare forwards of the same function.

Policy RL and DPO sample, take old log-probs and train on one function; reward training reads margins
r_w - r_l whose two sides would otherwise carry different random masks.
"""

from __future__ import annotations

from torch import nn


def disable_dropout(model: nn.Module, *, attention_rates: bool = True) -> None:
    """Set every nn.Dropout in `model` to p = 0 and, with `attention_rates`, every float attribute whose
    name contains "dropout" (attention-dropout rates some architectures keep as plain numbers)."""
    for sub in model.modules():
        if isinstance(sub, nn.Dropout):
            sub.p = 0.0
        if not attention_rates:
            continue
        for name, value in list(vars(sub).items()):
            if "dropout" in name and isinstance(value, float):
                setattr(sub, name, 0.0)
