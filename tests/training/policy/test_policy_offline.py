"""DPO from ranking groups and SFT from demonstrations on a tiny model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from tests.training.policy.policy_helpers import WORDS, make_prompts
from worker.training.groups import RankingGroup
from worker.training.policy import Demonstration, PolicyRun, PolicyTrainConfig, train_policy
from worker.training.policy.sft import IGNORE_INDEX, encode_demonstrations, make_sft_batch


def _sentence(rng: random.Random, marker: str) -> str:
    words = [rng.choice(WORDS) for _ in range(4)]
    words.insert(rng.randint(0, 4), marker)
    return " ".join(words)


def _groups(n: int, seed: int) -> list[RankingGroup]:
    """Planted preference: 'yes' beats 'maybe' beats 'no'; two 'no' completions tie."""
    rng = random.Random(seed)
    out = []
    for prompt in make_prompts(n, seed):
        comps = [_sentence(rng, "yes"), _sentence(rng, "no"), _sentence(rng, "maybe"), _sentence(rng, "no")]
        out.append(RankingGroup(prompt=prompt, completions=comps, ranks=[1, 3, 2, 3]))
    return out


def test_dpo_raises_margin_and_accuracy_and_scores_reference_once(tiny_models: Path, tmp_path: Path) -> None:
    train, heldout = _groups(24, seed=3), _groups(12, seed=4)
    ref_rows = {"n": 0}

    def count(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        # Reference forwards are the no-grad ones of the causal LM during training (no held-out eval here).
        if isinstance(module, LlamaForCausalLM) and not torch.is_grad_enabled():
            ref_rows["n"] += int(kwargs["input_ids"].shape[0])

    hook = torch.nn.Module.register_forward_pre_hook
    handles = []
    original_init = LlamaForCausalLM.__init__

    def patched_init(self: LlamaForCausalLM, *a: object, **kw: object) -> None:
        original_init(self, *a, **kw)
        handles.append(hook(self, count, with_kwargs=True))

    LlamaForCausalLM.__init__ = patched_init  # type: ignore[method-assign]
    try:
        cfg = PolicyTrainConfig(
            algorithm="dpo",
            epochs=3,
            steps=None,
            batch_size=4,
            learning_rate=2e-3,
            micro_batch_size=8,
            save_every=1000,
        )
        counted = train_policy(PolicyRun(
            cfg, policy_path=tiny_models["policy"], output_dir=tmp_path / "a", groups=train
        ))
    finally:
        LlamaForCausalLM.__init__ = original_init  # type: ignore[method-assign]
        for h in handles:
            h.remove()
    n_completions = sum(len(g.completions) for g in train)
    n_pairs = sum(len(g.pairs()) for g in train)
    assert ref_rows["n"] == n_completions  # once per completion for 3 epochs, not once per pair or epoch
    assert n_pairs > n_completions
    assert len(counted.history) == 18 and counted.history[-1]["pairs"] == 4 * 5

    result = train_policy(PolicyRun(
        cfg,
        policy_path=tiny_models["policy"],
        output_dir=tmp_path / "b",
        groups=train,
        heldout_groups=heldout,
    ))
    before, after = result.metrics["before"], result.metrics["after"]
    assert before["dpo_accuracy"] == pytest.approx(0.5) and before["dpo_reward_margin"] == pytest.approx(0.0)
    assert after["dpo_accuracy"] > 0.8
    assert after["dpo_reward_margin"] > 0.1
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def _demos(n: int, seed: int) -> list[Demonstration]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        word = rng.choice(WORDS)
        out.append(Demonstration(prompt=f"repeat {word}", completion=f"{word} {word} {word}."))
    return out


def test_sft_masks_prompt_tokens(tiny_models: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_models["policy"])
    demos = [Demonstration("repeat cat", "cat cat cat."), Demonstration("a much longer prompt here", "ok")]
    examples = encode_demonstrations(tok, demos, 64, 64)
    batch = make_sft_batch(examples, tok.pad_token_id, torch.device("cpu"))
    for row, (prompt_ids, completion_ids) in enumerate(examples):
        labelled = batch.labels[row][batch.labels[row] != IGNORE_INDEX].tolist()
        assert labelled == completion_ids  # exactly the completion (+EOS): no prompt, no padding
        assert completion_ids[-1] == tok.eos_token_id
        ids = batch.input_ids[row][batch.attention_mask[row].bool()].tolist()
        assert ids == prompt_ids + completion_ids
    assert batch.loss_mask.sum().item() == sum(len(e[1]) for e in examples)


def test_sft_lowers_heldout_loss(tiny_models: Path, tmp_path: Path) -> None:
    cfg = PolicyTrainConfig(
        algorithm="sft", steps=40, batch_size=8, learning_rate=3e-3, save_every=1000, micro_batch_size=4
    )
    result = train_policy(PolicyRun(
        cfg,
        policy_path=tiny_models["policy"],
        output_dir=tmp_path,
        demonstrations=_demos(64, 5),
        heldout_demonstrations=_demos(16, 6),
    ))
    before, after = result.metrics["before"]["sft_loss"], result.metrics["after"]["sft_loss"]
    assert after < 0.6 * before, (before, after)


def test_dpo_weights_scale_each_rankings_pull(tiny_models: Path, tmp_path: Path) -> None:
    """A ranking with trust weight 0 moves nothing: training on [kept, zero-weight] equals training on [kept]."""
    from dataclasses import replace

    from safetensors.torch import load_file

    kept = _groups(2, seed=11)
    ignored = [replace(g, ranks=list(reversed(g.ranks)), weight=0.0) for g in _groups(2, seed=12)]
    cfg = PolicyTrainConfig(algorithm="dpo", epochs=1, steps=None, batch_size=4, learning_rate=5e-3,
                            micro_batch_size=8, save_every=1000, seed=0)

    def weights_after(groups: list[RankingGroup], name: str) -> dict[str, torch.Tensor]:
        result = train_policy(PolicyRun(cfg, policy_path=tiny_models["policy"], output_dir=tmp_path / name, groups=groups))
        return load_file(str(Path(result.checkpoint) / "model.safetensors"))

    with_ignored, alone = weights_after(kept + ignored, "with"), weights_after(kept, "alone")
    start = load_file(str(Path(tiny_models["policy"]) / "model.safetensors"))
    moved = max(float((alone[k] - start[k]).abs().max()) for k in alone)
    assert moved > 1e-4  # the kept rankings did train the model
    for key in alone:
        torch.testing.assert_close(with_ignored[key], alone[key], rtol=1e-4, atol=1e-6)
