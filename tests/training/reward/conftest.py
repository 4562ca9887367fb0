"""Shared fixtures for reward-model tests: a tiny local reward model and planted-preference data."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from worker.training.groups import RankingGroup
from worker.training.tiny import default_texts, init_tiny_reward, train_tokenizer

torch.set_num_threads(1)

MARKER = "wonderful"
_WORDS = ("apple", "river", "stone", "cloud", "table", "green", "quick", "paper", "light", "music", "tiger", "orange")


def planted_groups(n: int, k: int = 4, seed: int = 0, prefix: str = "q") -> list[RankingGroup]:
    """Groups where completions containing MARKER beat those without (ties within each class)."""
    rng = random.Random(seed)
    groups = []
    for i in range(n):
        n_win = rng.randint(1, k - 1)
        completions, ranks = [], []
        for j in range(k):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 6))]
            if j < n_win:
                words.insert(rng.randrange(len(words) + 1), MARKER)
            completions.append(" " + " ".join(words))
            ranks.append(1 if j < n_win else 2)
        order = list(range(k))
        rng.shuffle(order)
        groups.append(
            RankingGroup(
                prompt=f"Prompt {prefix}{i}: say something about {rng.choice(_WORDS)}.",
                completions=[completions[o] for o in order],
                ranks=[ranks[o] for o in order],
                prompt_id=f"{prefix}{i}",
            )
        )
    return groups


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = default_texts() + [g.prompt + c for g in planted_groups(50) for c in g.completions]  # type: ignore[operator]
    return init_tiny_reward(tmp_path_factory.mktemp("tiny") / "reward", train_tokenizer(texts), seed=0)
