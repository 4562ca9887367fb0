"""Rewards for policy training: the RewardFn protocol and adapters from reward-model checkpoints to it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from worker.training.policy.batching import chunks, encode_completion, pack
from worker.training.reward.scorer import RewardScorer, resolve_checkpoint
from worker.training.sampling import Prompt, format_prompt, pad_token_id


class RewardFn(Protocol):
    """Scores completions: (prompts, completions) -> float tensor of shape (len(completions),)."""

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> torch.Tensor: ...


def resolve_reward_dir(path: str | Path) -> Path:
    """A reward checkpoint directory (or a reward training output holding `model/`), via the reward package."""
    try:
        return Path(resolve_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a prefloop checkpoint (e.g. a plain transformers directory)
        return Path(path)


def reward_fn_from_checkpoint(path: str | Path, device: torch.device, batch_size: int = 16) -> RewardFn:
    """Adapt a trained reward-model checkpoint to the RewardFn protocol.

    Uses prefloop's `worker.training.reward.RewardScorer` for checkpoints it wrote; a plain transformers
    sequence classifier directory (no meta.json) is scored directly on the chat-formatted prompt +
    completion + EOS.
    """
    root = Path(path)
    if not (resolve_reward_dir(root) / "meta.json").is_file():
        return _hf_reward_fn(root, device, batch_size)
    scorer = RewardScorer(root, device=device, batch_size=batch_size)

    def scored(prompts: Sequence[Prompt], completions: Sequence[str]) -> torch.Tensor:
        return torch.tensor(scorer.score(list(prompts), list(completions)), dtype=torch.float32)

    return scored


def _hf_reward_fn(path: str | Path, device: torch.device, batch_size: int) -> RewardFn:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = (
        AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
    )
    pad = pad_token_id(tokenizer)

    @torch.no_grad()
    def score(prompts: Sequence[Prompt], completions: Sequence[str]) -> torch.Tensor:
        rows = []
        for p, c in zip(prompts, completions, strict=True):
            p_ids = tokenizer(format_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
            rows.append((p_ids, encode_completion(tokenizer, c, 1024)))
        out = []
        for sl in chunks(len(rows), batch_size):
            part = rows[sl]
            ids, attn, _ = pack([r[0] for r in part], [r[1] for r in part], pad, device)
            # Left-align (right padding) so the classifier reads the last real token.
            order = torch.argsort(attn, dim=1, descending=True, stable=True)
            ids, attn = ids.gather(1, order), attn.gather(1, order)
            out.append(model(input_ids=ids, attention_mask=attn).logits[:, 0].float().cpu())
        return torch.cat(out)

    return score
