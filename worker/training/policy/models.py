"""Loading the models of a policy-training run: the trainable policy (optionally with LoRA adapters), its
frozen KL reference, PPO's value model, and the tokenizer.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from worker.training.activation_checkpointing import enable_training_checkpointing
from worker.training.devices import frozen, to_device
from worker.training.dropout import disable_dropout
from worker.training.policy.config import PolicyTrainConfig
from worker.training.policy.rewards import resolve_reward_dir
from worker.training.sampling import position_ids_from_mask


def load_tokenizer(policy_path: str | Path) -> Any:
    """The policy's tokenizer, padding with EOS when it has no pad token."""
    tokenizer: Any = AutoTokenizer.from_pretrained(str(policy_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class ValueModel(nn.Module):
    """A transformer backbone with a scalar head giving one value per token."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Values (batch, seq)."""
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        )
        values: torch.Tensor = self.head(out.last_hidden_state).squeeze(-1).float()
        return values


def build_value_model(
    reward_model_path: str | Path | None, policy_path: str | Path
) -> tuple[ValueModel, str]:
    """Value model initialised from the reward model (InstructGPT) when it loads as a sequence classifier.

    Otherwise (no reward model, or one in another format) the policy backbone with a zero scalar head.
    Returns the model and a note saying which initialisation was used.
    """
    if reward_model_path is not None:
        try:
            rm_dir = resolve_reward_dir(reward_model_path)
            rm = AutoModelForSequenceClassification.from_pretrained(
                str(rm_dir), dtype=torch.float32, num_labels=1
            )
            head = getattr(rm, "score", None) or getattr(rm, "classifier", None)
            if isinstance(head, nn.Linear) and head.out_features == 1:
                return ValueModel(rm.base_model, head), f"reward model {reward_model_path}"
        except (OSError, ValueError):
            pass
    backbone = AutoModel.from_pretrained(str(policy_path), dtype=torch.float32)
    head = nn.Linear(backbone.config.hidden_size, 1, bias=True)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return ValueModel(backbone, head), f"policy backbone {policy_path}"


def apply_lora(model: PreTrainedModel, config: PolicyTrainConfig) -> PreTrainedModel:
    """Wrap the policy in LoRA adapters (needs the optional `peft` package)."""
    try:
        from peft import LoraConfig, get_peft_model  # lazy: peft is an optional extra (prefloop[lora])
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError("lora_r > 0 needs the optional 'peft' package (pip install 'prefloop[lora]')") from exc
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules or "all-linear",
        task_type="CAUSAL_LM",
    )
    # A PeftModel forwards every attribute it lacks to the wrapped model, so callers keep using it as one.
    return cast(PreTrainedModel, get_peft_model(model, lora))


LORA_WEIGHTS_FILE = "adapter_model.safetensors"  # what PeftModel.save_pretrained writes (adapters only)


def load_lora_state(policy: PreTrainedModel, state_dir: str | Path) -> None:
    """Restore the adapter weights a LoRA run saved in its training state (the base weights never change).

    Raises ValueError when the saved adapters do not fit the policy's (another rank or target modules).
    """
    from peft import set_peft_model_state_dict  # lazy: peft is an optional extra (prefloop[lora])

    path = Path(state_dir) / LORA_WEIGHTS_FILE
    if not path.is_file():
        raise ValueError(f"{state_dir} holds no LoRA adapters ({LORA_WEIGHTS_FILE})")
    try:
        # peft annotates the result as a bare `namedtuple`; it is torch's (missing_keys, unexpected_keys).
        result = cast(tuple[list[str], list[str]], set_peft_model_state_dict(policy, load_file(str(path))))
    except RuntimeError as exc:  # shape mismatch
        raise ValueError(f"the LoRA adapters in {state_dir} do not fit this run: {exc}") from exc
    missing_keys, unexpected_keys = result
    missing = [k for k in missing_keys if "lora_" in k]
    if unexpected_keys or missing:
        raise ValueError(
            f"the LoRA adapters in {state_dir} do not fit this run "
            f"(unexpected {unexpected_keys[:3]}, missing {missing[:3]})"
        )


def load_train_models(
    config: PolicyTrainConfig, policy_path: str | Path, device: torch.device,
    reference_path: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedModel | None]:
    """The trainable policy (fp32 master weights) and the frozen reference: the model at
    `reference_path` (e.g. the SFT version, while the policy starts from a later round), else a frozen
    copy of the policy (None under LoRA: the reference is then the same model with adapters disabled)."""
    policy: PreTrainedModel = AutoModelForCausalLM.from_pretrained(str(policy_path), dtype=torch.float32)
    disable_dropout(policy, attention_rates=False)
    ref: PreTrainedModel | None = None
    separate = reference_path is not None and Path(reference_path).resolve() != Path(policy_path).resolve()
    if separate:
        ref = frozen(AutoModelForCausalLM.from_pretrained(str(reference_path), dtype=torch.float32), device)
    if config.lora_r > 0:
        policy = apply_lora(policy, config)
    elif ref is None:
        ref = frozen(copy.deepcopy(policy), device)
    if config.gradient_checkpointing:
        enable_training_checkpointing(policy)
    return to_device(policy, device), ref


@contextlib.contextmanager
def reference_mode(policy: PreTrainedModel, ref: PreTrainedModel | None) -> Iterator[PreTrainedModel]:
    """Yield the model that computes reference log-probs (the frozen copy, or the policy sans adapters)."""
    if ref is not None:
        yield ref
        return
    with policy.disable_adapter():  # type: ignore[operator]  # a PeftModel here, typed as the model it wraps
        yield policy
