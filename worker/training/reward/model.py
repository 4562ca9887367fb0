"""Loading a sequence-classification reward model and reading one scalar reward per sequence.

Any `AutoModelForSequenceClassification` with `num_labels=1` works. Where the reward is read (`pooling`):

* `last` (decoders with a `score` head): the last non-pad token, found from the attention mask (so left and
  right padding give the same result, also when pad == eos), with position ids derived from the mask;
* `mean` (encoders, the default for them): the mask-weighted mean of the last hidden states, through the
  model's linear `classifier`. Sentence-transformers exports such as all-MiniLM-L6-v2 were trained with mean
  pooling, and their BERT `pooler` (dense + tanh over [CLS]) was never trained for that checkpoint, so reading
  the reward through it starts from a random projection of one token;
* `cls`: the first token's last hidden state through `classifier` (no pooler), for exports trained that way;
* `head`: the model's own forward (e.g. BERT's pooler + classifier), as before this option existed.

The choice is stored in the model config (`reward_pooling`), so a checkpoint is always scored the way it was
trained; a prefloop checkpoint from before the option keeps `head` (encoders) or `last` (decoders).

Ensembles (`heads` > 1): the classification head gets one output per member (`num_labels` = heads, stored
as `reward_heads`), all reading the same pooled features. Training fits each member on its own bootstrap
of the ranking groups (worker.training.reward.train), so the members disagree where the data is thin; the
reward is their mean and `forward(..., members=True)` returns each member's, whose disagreement active
selection uses (app.quality.stats.active.ensemble_disagreement). One backbone pass serves every member, so an
ensemble costs almost nothing over one head (a "multi-head" ensemble rather than N seeds; the members
share their features and so tend to be more alike than independently trained models).

Prefix sharing (decoder models with a KV cache only; in an encoder the prompt attends to the completion):
the groups' common prefixes run once, their key/value cache is gathered to one copy per completion, and
the suffixes run on top of it with positions continuing the prefix. Gradients flow back through the cache
into the prefix, so training is the same computation as forwarding each full sequence, with the prefix
computed once per group instead of once per completion.
"""

from __future__ import annotations

import inspect
import json
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


POOLING_MODES = ("last", "mean", "cls", "head")


def _has_decoder_head(model: PreTrainedModel) -> bool:
    head = getattr(model, "score", None)
    return isinstance(head, nn.Linear) and not getattr(model.config, "is_encoder_decoder", False)


def _linear_classifier(model: PreTrainedModel) -> nn.Linear | None:
    """The encoder's final linear layer over hidden_size features, when it has exactly that shape."""
    head = getattr(model, "classifier", None)
    hidden = getattr(model.config, "hidden_size", None)
    return head if isinstance(head, nn.Linear) and head.in_features == hidden else None


def sentence_transformers_pooling(path: str | Path) -> str | None:
    """The pooling a sentence-transformers export was trained with (`mean` or `cls`), None when not an export."""
    root = Path(path)
    try:
        modules = json.loads((root / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    for module in modules if isinstance(modules, list) else []:
        if str(module.get("type", "")).endswith("models.Pooling"):
            try:
                cfg = json.loads((root / str(module.get("path", "")) / "config.json").read_text())
            except (OSError, ValueError):
                return "mean"  # the sentence-transformers default
            if cfg.get("pooling_mode_cls_token"):
                return "cls"
            return "mean"
    return None


def resolve_pooling(model: PreTrainedModel, path: str | Path | None = None, requested: str = "auto") -> str:
    """The pooling to use for `model` (loaded from `path`): an explicit request, else what the checkpoint says,
    else by architecture (decoder: last; encoder with a linear classifier: the export's pooling or mean)."""
    decoder = _has_decoder_head(model)
    if requested != "auto":
        if requested not in POOLING_MODES:
            raise ValueError(f"unknown pooling {requested!r} (one of {', '.join(POOLING_MODES)})")
        if requested == "last" and not decoder:
            raise ValueError(f"pooling 'last' needs a decoder with a `score` head; {type(model).__name__} has none")
        if requested in ("mean", "cls") and _linear_classifier(model) is None:
            raise ValueError(f"pooling {requested!r} needs a linear `classifier` over the hidden states; "
                             f"{type(model).__name__} has another head (use 'head')")
        return requested
    stored = getattr(model.config, "reward_pooling", None)
    if stored in POOLING_MODES:
        return str(stored)
    if decoder:
        return "last"
    if path is not None and (Path(path) / "meta.json").is_file():
        return "head"  # a prefloop checkpoint trained before pooling was configurable
    if _linear_classifier(model) is None:
        return "head"
    return (sentence_transformers_pooling(path) if path is not None else None) or "mean"


def stored_heads(path: str | Path) -> int:
    """The number of reward heads a prefloop checkpoint was trained with (1 for anything else)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return 1
    heads = config.get("reward_heads") if isinstance(config, dict) else None
    return heads if isinstance(heads, int) and heads >= 1 else 1


def load_reward_model(
    path: str | Path, *, gradient_checkpointing: bool = False, dtype: torch.dtype | None = None,
    pooling: str = "auto", heads: int | None = None,
) -> tuple[PreTrainedModel, Any]:
    """Load model and tokenizer from a local directory; never contacts a hub.

    `heads` outputs per sequence (an ensemble when > 1; a head of another size in the checkpoint is
    re-initialised); None keeps what a prefloop checkpoint was trained with, else 1. The resolved pooling
    (`resolve_pooling`) and the heads are written to `model.config` (`reward_pooling`, `reward_heads`), so
    they are saved with every checkpoint of this model and `RewardModule` reads them from there.
    """
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    n_heads = heads if heads is not None else stored_heads(path)
    kwargs: dict[str, Any] = {"num_labels": n_heads, "local_files_only": True}
    if heads is not None:
        kwargs["ignore_mismatched_sizes"] = True
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    model.config.reward_heads = n_heads
    ensure_pad_token(model, tokenizer)
    model.config.reward_pooling = resolve_pooling(model, path, pooling)
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
        model.config.use_cache = False
    return model, tokenizer


class RewardModule(nn.Module):
    """Wraps a sequence-classification model so `forward(input_ids, attention_mask)` returns rewards [B].

    Wrapping (rather than calling the inner model's parts from outside) keeps DistributedDataParallel
    correct: DDP must see the forward call that uses the parameters.
    """

    def __init__(self, model: PreTrainedModel, pooling: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.pooling = resolve_pooling(model, None, pooling or getattr(model.config, "reward_pooling", None) or "auto")
        model.config.reward_pooling = self.pooling
        base = model.base_model
        if self.pooling in ("mean", "cls") and getattr(base, "pooler", None) is not None:
            # Unused by these poolings; removing it keeps DDP from waiting for gradients that never come.
            base.register_module("pooler", None)
        params = inspect.signature(base.forward).parameters
        self._pass_positions = "position_ids" in params
        self._cache_kwarg = cache_kwarg(base.forward)
        self.heads = int(getattr(model.config, "num_labels", 1) or 1)

    @property
    def backbone(self) -> nn.Module:
        """The transformer body; one call of it per forwarded batch of sequences."""
        return self.model.base_model

    @property
    def can_share_prefix(self) -> bool:
        """True for decoder models whose body takes a KV cache and explicit positions."""
        return self.pooling == "last" and self._pass_positions and self._cache_kwarg is not None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix_ids: torch.Tensor | None = None,
                prefix_mask: torch.Tensor | None = None, row_group: torch.Tensor | None = None,
                members: bool = False) -> torch.Tensor:
        """Rewards [N] of full sequences, or (with the prefix arguments) of prefix[row_group] + suffix rows,
        where `input_ids`/`attention_mask` are then right-padded suffixes. The reward is the mean over the
        heads; `members=True` returns every head's instead, [N, heads]."""
        outputs = self._outputs(input_ids, attention_mask, prefix_ids, prefix_mask, row_group)
        return outputs if members else outputs.mean(-1)

    def _outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prefix_ids: torch.Tensor | None,
                 prefix_mask: torch.Tensor | None, row_group: torch.Tensor | None) -> torch.Tensor:
        """The heads' outputs [N, heads]."""
        if prefix_ids is not None:
            assert prefix_mask is not None and row_group is not None
            return self._forward_shared(prefix_ids, prefix_mask, row_group, input_ids, attention_mask)
        if self.pooling == "head":
            logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            return logits
        if self.pooling in ("mean", "cls"):
            hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return self._head("classifier", pooled)
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
        return self._head("score", pooled)

    def _head(self, name: str, pooled: torch.Tensor) -> torch.Tensor:
        """The model's output layer `name` (`score` on decoders, `classifier` on encoders) on pooled states."""
        out: torch.Tensor = self.model.get_submodule(name)(pooled)
        return out

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
        return self._head("score", pooled)
