"""The shared sampling path: one prefill per prompt group, left padding, EOS stopping, text output."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from transformers import AutoTokenizer

from worker.training.sampling import (
    Rollout,
    decode_responses,
    decode_text,
    format_prompt,
    left_pad,
    load_policy,
    rollout,
    sample_completions,
)


def _count_forwards(model: torch.nn.Module) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []

    def hook(_mod: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls.append(tuple(ids.shape))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def test_prompt_prefilled_once_per_group(tiny_models: dict[str, Path]) -> None:
    model, tok = load_policy(tiny_models["policy"], device="cpu")
    calls = _count_forwards(model)
    n_tok_calls = 0
    original = type(tok).__call__

    class Counting(type(tok)):  # type: ignore[misc]
        def __call__(self, *a, **kw):  # type: ignore[no-untyped-def]
            nonlocal n_tok_calls
            n_tok_calls += 1
            return original(self, *a, **kw)

    tok.__class__ = Counting
    prompts = ["write about cats", "a much longer prompt about the river and the old trees"]
    out = rollout(model, tok, prompts, k=4, max_new_tokens=5, seed=0, batch_size=8)
    prefills = [c for c in calls if c[1] > 1]
    decodes = [c for c in calls if c[1] == 1]
    assert len(prefills) == 1 and prefills[0][0] == 2  # 2 prompts, not 8 rows
    assert all(c[0] == 8 for c in decodes)
    assert n_tok_calls == 1
    assert out.response_ids.shape[0] == 8
    # Left padding: the short prompt is padded on the left and its last position is real.
    assert out.prompt_mask[0, 0] == 0 and out.prompt_mask[0, -1] == 1
    assert out.prompt_mask[4:].all()
    assert torch.equal(out.prompt_index, torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))


def test_left_padding_gives_same_tokens_as_unpadded(tiny_models: dict[str, Path]) -> None:
    model, tok = load_policy(tiny_models["policy"], device="cpu")
    short = "write about cats"
    long = "a much longer prompt about the river and the old trees and more words"
    alone = rollout(model, tok, [short], k=1, temperature=0.0, max_new_tokens=6)
    batched = rollout(model, tok, [long, short], k=1, temperature=0.0, max_new_tokens=6)
    n = int(alone.response_mask[0].sum())
    assert torch.equal(alone.response_ids[0, :n], batched.response_ids[1, :n])
    assert torch.allclose(alone.logprobs[0, :n], batched.logprobs[1, :n], atol=1e-4)


def test_stops_on_eos(tiny_models: dict[str, Path]) -> None:
    model, tok = load_policy(tiny_models["policy"], device="cpu")
    calls = _count_forwards(model)
    # Make EOS overwhelmingly likely: every sample must end after one token and decoding must stop.
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tok.eos_token_id] = 100.0
    model.lm_head = head
    out = rollout(model, tok, ["hello", "write about the sun"], k=3, max_new_tokens=10, seed=1)
    assert out.has_eos.all()
    assert out.response_mask.sum(1).tolist() == [1] * 6
    assert len(calls) == 1  # the prefill only: no decode step after everyone hit EOS
    texts = sample_completions(model, tok, ["hello"], k=2, max_new_tokens=10)
    assert texts == [["", ""]]


def test_sample_completions_shape_and_seed(tiny_models: dict[str, Path]) -> None:
    model, tok = load_policy(tiny_models["policy"], device="cpu")
    prompts = [
        "write about cats",
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    ]
    a = sample_completions(model, tok, prompts, k=3, max_new_tokens=8, seed=7, batch_size=1)
    b = sample_completions(model, tok, prompts, k=3, max_new_tokens=8, seed=7, batch_size=1)
    assert a == b and len(a) == 2 and all(len(x) == 3 for x in a)
    assert all(isinstance(s, str) for group in a for s in group)


def test_chat_template_fallbacks(tiny_models: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models["policy"])
    msgs = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "hello"}]
    assert format_prompt(tok, "hello").endswith("<|assistant|>\n")
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    assert format_prompt(tok, msgs) == "[user] SYS\n\nhello\n[assistant] "
    tok.chat_template = None
    assert format_prompt(tok, "plain text") == "plain text"
    assert format_prompt(tok, msgs) == "system: SYS\nuser: hello\nassistant: "


def test_left_pad() -> None:
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def _responses(batch) -> list[list[int]]:  # type: ignore[no-untyped-def]
    return [row[: int(n)] for row, n in zip(batch.response_ids.tolist(), batch.response_mask.sum(1), strict=True)]


def test_samples_do_not_depend_on_batch_layout_or_neighbours(tiny_models: dict[str, Path]) -> None:
    """A sample's randomness is keyed by (seed, prompt key, sample number): how prompts are batched, and which
    other prompts share the call (another DDP rank's share), change nothing."""
    model, tok = load_policy(tiny_models["policy"], device="cpu")
    prompts = ["write about cats", "a much longer prompt about the river and the old trees", "hello", "rain"]
    together = _responses(rollout(model, tok, prompts, k=3, max_new_tokens=10, seed=11, batch_size=4))
    one_by_one = _responses(rollout(model, tok, prompts, k=3, max_new_tokens=10, seed=11, batch_size=1))
    assert together == one_by_one
    # The odd-indexed prompts alone (as on rank 1 of 2), keyed by their indices in the full list.
    shard = _responses(rollout(model, tok, prompts[1::2], k=3, max_new_tokens=10, seed=11, prompt_keys=[1, 3]))
    assert shard == together[3:6] + together[9:12]
    assert len({tuple(r) for r in together}) > 6  # samples of a prompt differ from one another
    other_seed = _responses(rollout(model, tok, prompts, k=3, max_new_tokens=10, seed=12, batch_size=4))
    assert other_seed != together


def test_sampling_passes_the_cache_under_the_installed_name(tiny_models: dict[str, Path]) -> None:
    """transformers 5.24 renamed `past_key_values` to `cache`; passing the old name warns on every decode step,
    and missing both would silently decode without a cache (one full forward per token)."""
    model, tok = load_policy(tiny_models["policy"], device="cpu")
    calls = _count_forwards(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rollout(model, tok, ["write about cats"], k=2, max_new_tokens=4, seed=0, batch_size=8)
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []
    assert all(c[1] == 1 for c in calls[1:])  # after the prefill, one new token per forward: the cache is used


def test_decode_never_splits_multibyte_characters(tiny_models: dict[str, Path]) -> None:
    """A response cut inside a multi-byte character keeps its complete prefix and shows no U+FFFD."""
    _model, tok = load_policy(tiny_models["policy"], device="cpu")
    text = "cats purr 😀 é"
    ids = tok.encode(text, add_special_tokens=False)
    prefix_len = len(tok.encode("cats purr ", add_special_tokens=False))
    assert len(ids) - prefix_len >= 3, "the emoji must span several byte tokens for this test"
    assert "\ufffd" in tok.decode(ids[: prefix_len + 2])  # the plain per-cut decode does split it

    for cut in range(prefix_len + 1, prefix_len + 4):  # inside the 4-byte emoji
        assert decode_text(tok, ids[:cut]) == "cats purr "
    assert decode_text(tok, ids) == text
    assert decode_text(tok, [tok.bos_token_id, *ids, tok.eos_token_id]) == text  # special tokens left out

    # The same path through a Rollout: every row cut at a different point, each mid-character or not.
    rows = [ids[:cut] for cut in range(prefix_len, len(ids) + 1)]
    width = max(map(len, rows))
    batch = Rollout(
        prompt_ids=torch.zeros(len(rows), 1, dtype=torch.long),
        prompt_mask=torch.ones(len(rows), 1, dtype=torch.long),
        response_ids=torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows]),
        response_mask=torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        logprobs=torch.zeros(len(rows), width),
        has_eos=torch.zeros(len(rows), dtype=torch.bool),
        prompt_index=torch.arange(len(rows)),
        k=1,
    )
    texts = decode_responses(tok, batch)
    assert all("\ufffd" not in t and text.startswith(t) for t in texts)
    assert texts[0] == "cats purr " and texts[-1] == text


def test_decode_keeps_a_whole_replacement_character_and_drops_stray_bytes(tiny_models: dict[str, Path]) -> None:
    _model, tok = load_policy(tiny_models["policy"], device="cpu")
    whole = tok.encode("a\ufffdb", add_special_tokens=False)  # the model spelled U+FFFD itself: kept
    assert decode_text(tok, whole) == "a\ufffdb"
    emoji = tok.encode("😀", add_special_tokens=False)
    stray = tok.encode("a", add_special_tokens=False) + emoji[:2] + tok.encode("b", add_special_tokens=False)
    assert decode_text(tok, stray) == "ab"  # an unfinished character in the middle is not shown as U+FFFD


def test_sampled_text_has_no_replacement_characters(tiny_models: dict[str, Path]) -> None:
    model, tok = load_policy(tiny_models["policy"], device="cpu")
    groups = sample_completions(model, tok, ["write about cats"], k=8, max_new_tokens=12, seed=3, temperature=1.5)
    assert all("\ufffd" not in s for s in groups[0])
