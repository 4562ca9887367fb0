"""Shared fixtures for reward-model tests: tiny local decoder and encoder reward models, planted-preference data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import processors
from transformers import BertConfig, BertForSequenceClassification

from worker.training.groups import RankingGroup
from worker.training.tiny import BOS_TOKEN, default_texts, init_tiny_reward, train_tokenizer

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


def tokenizer_with_bos(texts: list[str]) -> Any:
    """The tiny tokenizer, but every sequence starts with <|bos|> (as an encoder's [CLS])."""
    tok = train_tokenizer(texts)
    bos = tok.convert_tokens_to_ids(BOS_TOKEN)
    tok.backend_tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{BOS_TOKEN} $A", special_tokens=[(BOS_TOKEN, bos)]),
    ])
    return tok


def init_tiny_encoder(out_dir: Path, tokenizer: Any, seed: int = 0) -> Path:
    """A random two-layer BERT reward model (BertForSequenceClassification, num_labels=1) with a linear head."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=48, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=96, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                        num_labels=1)
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = default_texts() + [g.prompt + c for g in planted_groups(50) for c in g.completions]  # type: ignore[operator]
    return init_tiny_encoder(tmp_path_factory.mktemp("tiny-enc") / "encoder", tokenizer_with_bos(texts))
