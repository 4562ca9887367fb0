"""Shared helpers of the policy tests: toy corpus, prompts and a planted reward function."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

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


def stop_after(calls_allowed: int) -> Callable[[], bool]:
    """A `should_stop` that turns true on its (calls_allowed + 1)-th call (train_policy asks once per step)."""
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > calls_allowed

    return should_stop


def assert_same_checkpoint(a_dir: Path, b_dir: Path, atol: float = 1e-5) -> None:
    """Every weight of two saved policies agrees."""
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-4)


def run_planted(tiny: dict[str, Path], out: Path, cfg: Any, prompts: Sequence[str], heldout: Sequence[str],
                **kw: Any) -> Any:
    """train_policy on `prompts` with the planted vowel reward, evaluated on `heldout`."""
    from worker.training.policy import PolicyRun, train_policy

    return train_policy(PolicyRun(cfg, policy_path=tiny["policy"], output_dir=out, prompts=prompts, reward_fn=vowel_reward,
                        heldout_prompts=heldout, **kw))
