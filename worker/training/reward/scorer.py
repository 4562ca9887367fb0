"""Scoring with a trained reward-model checkpoint: load once, score many (for the worker and the API)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from worker.training.checkpoint import CheckpointError, load_meta, verify_checkpoint
from worker.training.groups import Prompt, RankingGroup, render_prompt
from worker.training.reward.batching import EncodedGroup, encode_groups, encode_texts, truncation_report
from worker.training.reward.eval import pairwise_metrics, score_encoded_groups, score_member_rows, score_rows
from worker.training.reward.model import RewardModule, load_reward_model


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory itself, or a training output directory holding `model/`."""
    root = Path(path)
    if (root / "meta.json").is_file():
        return root
    if (root / "model" / "meta.json").is_file():
        return root / "model"
    raise CheckpointError(f"{root} is not a reward-model checkpoint (no meta.json in it or in {root / 'model'})")


class RewardScorer:
    """A loaded reward model; `score` returns bias-corrected rewards (mean 0 over its training data)."""

    def __init__(
        self,
        checkpoint_dir: str | Path,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        verify: bool = True,
    ) -> None:
        self.path = resolve_checkpoint(checkpoint_dir)
        self.meta = verify_checkpoint(self.path) if verify else load_meta(self.path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, self.tokenizer = load_reward_model(self.path)
        self.module = RewardModule(model).to(self.device).eval()
        self.bias = float(self.meta.get("reward_bias", 0.0))
        self.batch_size = batch_size
        self.max_length = max_length or int(self.meta.get("config", {}).get("max_length", 512))

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def heads(self) -> int:
        """Ensemble members of this reward model (1: a single head)."""
        return self.module.heads

    def _rows(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> list[list[int]]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
        texts = [render_prompt(p, c, self.tokenizer) for p, c in zip(prompts, completions, strict=True)]
        return encode_texts(self.tokenizer, texts, self.max_length)

    def score(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> list[float]:
        """One reward per (prompt, completion) pair (the ensemble's mean)."""
        if not prompts and not completions:
            return []
        raw = score_rows(self.module, self._rows(prompts, completions), self.pad_id, self.device,
                         batch_size=self.batch_size)
        return [r - self.bias for r in raw]

    def score_members(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> list[list[float]]:
        """Every ensemble member's reward per (prompt, completion) pair, [pairs][heads]; a member's rewards
        are only meaningful relative to each other (differences), as for the Bradley-Terry preference."""
        if not prompts and not completions:
            return []
        return score_member_rows(self.module, self._rows(prompts, completions), self.pad_id, self.device,
                                 batch_size=self.batch_size)

    def score_groups(self, groups: Sequence[RankingGroup]) -> list[list[float]]:
        """Rewards per completion of each group."""
        return self._score_encoded(encode_groups(groups, self.tokenizer, self.max_length))

    def _score_encoded(self, encoded: Sequence[EncodedGroup]) -> list[list[float]]:
        raw = score_encoded_groups(self.module, encoded, self.pad_id, self.device, batch_size=self.batch_size)
        return [[r - self.bias for r in g] for g in raw]

    def evaluate(self, groups: Sequence[RankingGroup]) -> dict[str, Any]:
        """Pairwise metrics on `groups` (accuracy and its 95 % interval, length baseline, by gap and length
        difference, calibration, per annotator; see `pairwise_metrics`) and how much input was truncated."""
        encoded = encode_groups(groups, self.tokenizer, self.max_length)
        metrics = pairwise_metrics(groups, self._score_encoded(encoded))
        metrics["truncation"] = truncation_report(encoded)
        return metrics


def score_texts(
    checkpoint_dir: str | Path, prompts: Sequence[Prompt], completions: Sequence[str], batch_size: int = 32
) -> list[float]:
    """Load a checkpoint and score (prompt, completion) pairs; use RewardScorer to score repeatedly."""
    return RewardScorer(checkpoint_dir, batch_size=batch_size).score(prompts, completions)
