"""Shared helpers of the policy tests: toy corpus, prompts and a planted reward function."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "and",
    "ate",
    "some",
    "food",
    "while",
    "the",
    "dog",
    "ran",
    "in",
    "the",
    "park",
    "near",
    "old",
    "trees",
    "we",
    "like",
    "to",
    "read",
    "books",
    "about",
    "rivers",
    "mountains",
    "cities",
    "people",
    "music",
    "yes",
    "no",
    "maybe",
    "answer",
    "question",
    "please",
    "write",
    "short",
    "story",
    "about",
    "summer",
    "winter",
    "ocean",
    "rain",
    "sun",
    "moon",
    "friend",
    "family",
]

VOWELS = set("aeiou")


def corpus(n: int = 300, seed: int = 0) -> list[str]:
    """Deterministic toy sentences to train the tiny tokenizer on."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(n)]


def make_prompts(n: int, seed: int) -> list[str]:
    """Short instruction-like prompts."""
    rng = random.Random(seed)
    return [f"write about {rng.choice(WORDS)} and {rng.choice(WORDS)}" for _ in range(n)]


def vowel_reward(prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
    """Planted reward: the fraction of a completion's characters that are vowels (0 for an empty one)."""
    return torch.tensor([sum(c in VOWELS for c in text) / max(len(text), 1) for text in completions])
