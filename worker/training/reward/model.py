"""Loading a sequence-classification reward model and reading one scalar reward per sequence.

Any `AutoModelForSequenceClassification` with `num_labels=1` works. For decoder models with a `score`
head the reward is read at the last non-pad token, found from the attention mask (so left and right
padding give the same result, also when pad == eos), with position ids derived from the mask.
Encoders (BERT-like) pool with their own head (CLS), so their forward is used unchanged.

Prefix sharing (decoder models with a KV cache only; in an encoder the prompt attends to the completion):
the groups' common prefixes run once, their key/value cache is gathered to one copy per completion, and
the suffixes run on top of it with positions continuing the prefix. Gradients flow back through the cache
into the prefix, so training is the same computation as forwarding each full sequence, with the prefix
computed once per group instead of once per completion.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers.cache_utils import DynamicCache

from worker.training.activation_checkpointing import enable_activation_checkpointing
from worker.training.kv_cache import cache_kwarg


def ensure_pad_token(model: PreTrainedModel, tokenizer: Any) -> None:
    """Give tokenizer and model a pad token when missing (eos, else unk, else a new token)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            model.resize_token_embeddings(len(tokenizer))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def load_reward_model(
    path: str | Path, *, gradient_checkpointing: bool = False, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, Any]:
    """Load model (num_labels=1) and tokenizer from a local directory; never contacts a hub."""
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    kwargs: dict[str, Any] = {"num_labels": 1, "local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    ensure_pad_token(model, tokenizer)
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
        model.config.use_cache = False
    return model, tokenizer


class RewardModule(nn.Module):
    """Wraps a sequence-classification model so `forward(input_ids, attention_mask)` returns rewards [B].

    Wrapping (rather than calling the inner model's parts from outside) keeps DistributedDataParallel
    correct: DDP must see the forward call that uses the parameters.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model
        head = getattr(model, "score", None)
        self._decoder_head = isinstance(head, nn.Linear) and not getattr(model.config, "is_encoder_decoder", False)
        base = model.base_model
        params = inspect.signature(base.forward).parameters
        self._pass_positions = "position_ids" in params
        self._cache_kwarg = cache_kwarg(base.forward)

    @property
    def backbone(self) -> nn.Module:
        """The transformer body; one call of it per forwarded batch of sequences."""
        return self.model.base_model

    @property
    def can_share_prefix(self) -> bool:
        """True for decoder models whose body takes a KV cache and explicit positions."""
        return self._decoder_head and self._pass_positions and self._cache_kwarg is not None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix_ids: torch.Tensor | None = None,
                prefix_mask: torch.Tensor | None = None, row_group: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards [N] of full sequences, or (with the prefix arguments) of prefix[row_group] + suffix rows,
        where `input_ids`/`attention_mask` are then right-padded suffixes."""
        if prefix_ids is not None:
            assert prefix_mask is not None and row_group is not None
            return self._forward_shared(prefix_ids, prefix_mask, row_group, input_ids, attention_mask)
        if not self._decoder_head:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0]
        kwargs: dict[str, Any] = {"attention_mask": attention_mask}
        if self._pass_positions:
            # Left padding would otherwise shift every position; real tokens start at position 0.
            kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if getattr(self.model.config, "use_cache", None) is not None:
            kwargs["use_cache"] = False
        hidden = self.model.base_model(input_ids=input_ids, **kwargs).last_hidden_state
        seq_len = attention_mask.shape[-1]
        positions = torch.arange(seq_len, device=attention_mask.device)
        last = (positions * attention_mask.long()).argmax(-1)  # rightmost attended token, any padding side
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.model.score(pooled)[:, 0]

    def _forward_shared(self, prefix_ids: torch.Tensor, prefix_mask: torch.Tensor, row_group: torch.Tensor,
                        suffix_ids: torch.Tensor, suffix_mask: torch.Tensor) -> torch.Tensor:
        if not self.can_share_prefix:
            raise ValueError(f"{type(self.model).__name__} cannot share prompt prefixes (decoder models only)")
        body = self.model.base_model
        cache = DynamicCache(config=self.model.config)
        prefix_mask = prefix_mask.long()
        with_cache: dict[str, Any] = {str(self._cache_kwarg): cache, "use_cache": True}
        body(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0),
             **with_cache)
        cache.batch_select_indices(row_group)  # a differentiable gather: one prefix copy per completion
        suffix_mask = suffix_mask.long()
        positions = prefix_mask.sum(-1)[row_group].unsqueeze(1) + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = body(input_ids=suffix_ids, attention_mask=torch.cat([prefix_mask[row_group], suffix_mask], 1),
                      position_ids=positions, **with_cache).last_hidden_state
        last = (suffix_mask.sum(-1) - 1).clamp(min=0)  # suffixes are right-padded and never empty
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.model.score(pooled)[:, 0]
