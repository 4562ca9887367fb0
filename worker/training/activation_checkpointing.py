"""Turning on activation (gradient) checkpointing across transformers versions.

transformers 5 renamed `gradient_checkpointing_enable` to `activation_checkpointing_enable` and warns on
the old name; 4.x has only the old one. Non-reentrant checkpointing either way (it works with frozen inputs,
e.g. LoRA, and with `torch.compile`).
"""

from __future__ import annotations

from typing import Any

_KWARGS = {"use_reentrant": False}


def enable_activation_checkpointing(model: Any) -> None:
    """Checkpoint every layer of a transformers model (or anything exposing either method)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=dict(_KWARGS))
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(_KWARGS))


def supports_activation_checkpointing(model: Any) -> bool:
    """Whether `enable_activation_checkpointing` can act on `model`."""
    return hasattr(model, "activation_checkpointing_enable") or hasattr(model, "gradient_checkpointing_enable")


def enable_training_checkpointing(model: Any) -> None:
    """Activation checkpointing for training, with the KV cache off (checkpointed layers cannot fill one)."""
    enable_activation_checkpointing(model)
    model.config.use_cache = False
