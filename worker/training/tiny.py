"""Tiny, locally created models: a byte-level BPE tokenizer and Llama-style policy/reward backbones.

Tests, CI and the CPU demo need real transformers models without touching a model hub. Everything
here is trained or randomly initialised on the spot and is deterministic given the seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

PAD_TOKEN = "<|pad|>"  # noqa: S105 (a token, not a secret)
BOS_TOKEN = "<|bos|>"  # noqa: S105 (a token, not a secret)
EOS_TOKEN = "<|eos|>"  # noqa: S105 (a token, not a secret)
UNK_TOKEN = "<|unk|>"  # noqa: S105 (a token, not a secret)
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]

# A minimal ChatML-like template: enough for `apply_chat_template` (with and without a generation prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}" + EOS_TOKEN + "\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# A few hundred thousand parameters: trains on CPU in seconds, still a real Llama stack.
TINY_HIDDEN = 96
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_KV_HEADS = 2
TINY_INTERMEDIATE = 256
TINY_MAX_POSITIONS = 512


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` and wrap it for transformers.

    The result has pad/bos/eos/unk tokens, a chat template, and right padding by default. Byte-level
    means any input string encodes (no unknown characters), whatever the training texts were.
    """
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Keep offsets byte-accurate; no automatic BOS/EOS so callers decide what a sequence ends with.
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=TINY_MAX_POSITIONS,
        padding_side="right",
        # Llama takes no token types; transformers 4.x would otherwise return them and generate() rejects them.
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _tiny_config(tokenizer: PreTrainedTokenizerFast, **extra: Any) -> LlamaConfig:
    """The tiny Llama config for `tokenizer`; `extra` adds or overrides fields (e.g. a wider bench model)."""
    fields: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=TINY_HIDDEN,
        intermediate_size=TINY_INTERMEDIATE,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS,
        num_key_value_heads=TINY_KV_HEADS,
        max_position_embeddings=TINY_MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaConfig(**{**fields, **extra})


def init_tiny_policy(out_dir: str | Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0,
                     **config: Any) -> Path:
    """Create a random tiny LlamaForCausalLM in `out_dir` (weights, config, tokenizer, generation config);
    `config` overrides fields of the tiny Llama config (e.g. the 0.5B shape of bench/gpu.py)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_tiny_config(tokenizer, **config))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        max_new_tokens=32,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def init_tiny_reward(out_dir: str | Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0,
                     **config: Any) -> Path:
    """Create a random tiny reward model (LlamaForSequenceClassification, num_labels=1) in `out_dir`;
    `config` overrides fields of the tiny Llama config."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(_tiny_config(tokenizer, **{**config, "num_labels": 1}))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def init_tiny(out_dir: str | Path, texts: Iterable[str], seed: int = 0, vocab_size: int = 512) -> dict[str, Path]:
    """Train a tokenizer on `texts` and create `policy/` and `reward/` tiny models under `out_dir`."""
    out = Path(out_dir)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    return {
        "policy": init_tiny_policy(out / "policy", tokenizer, seed=seed),
        "reward": init_tiny_reward(out / "reward", tokenizer, seed=seed),
    }


_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please summarize the following article in two sentences.",
    "Write a short poem about the sea at night.",
    "Explain why the sky looks blue during the day.",
    "How do I reverse a list in Python?",
    "The meeting was moved to Thursday afternoon.",
    "Thank you for your help, that answer was clear and kind.",
    "I am not sure that is correct; could you check the numbers again?",
    "A good summary keeps the main point and drops the details.",
    "Rain is expected tomorrow, so bring an umbrella.",
    "Translate 'good morning' into French: bonjour.",
    "The recipe needs two eggs, a cup of flour and some milk.",
    "Prices rose by 3.5% last year, according to the report.",
    "She finished the marathon in 3 hours and 41 minutes!",
    "def add(a, b):\n    return a + b",
    "TL;DR: the landlord refused to fix the heater for a month.",
    "Be respectful, honest and helpful in every answer.",
    "That comment was rude and unhelpful.",
    "The model should refuse harmful requests politely.",
    "Once upon a time, a small robot learned to paint.",
)
_SUBJECTS = ("The assistant", "My neighbour", "A careful reader", "The new student", "Our team", "The old teacher",
             "A tired traveller", "The city council")
_VERBS = ("explained", "wrote", "questioned", "summarized", "praised", "ignored", "rewrote", "answered")
_OBJECTS = ("the long email", "a difficult question", "the weather report", "the final chapter",
            "an angry review", "the quarterly budget", "a friendly letter", "the safety rules")
_ENDINGS = (".", " very clearly.", " without any mistakes.", " in a rude way.", " before lunch.")


def default_texts() -> list[str]:
    """A few hundred varied built-in sentences for training a tiny tokenizer (deterministic)."""
    texts = list(_SENTENCES)
    i = 0
    for s in _SUBJECTS:
        for v in _VERBS:
            for o in _OBJECTS:
                texts.append(f"{s} {v} {o}{_ENDINGS[i % len(_ENDINGS)]}")
                i += 1
    return texts
