"""Prompt-prefix sharing: the same rewards, gradients and training as forwarding every full sequence, with the
prefix forwarded once per group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

from tests.training.reward.conftest import planted_groups
from worker.training.groups import RankingGroup
from worker.training.reward import RewardTrainConfig, train_reward_model
from worker.training.reward.batching import collate, encode_groups, fit_group, shared_prefix_length
from worker.training.reward.config import ConfigError
from worker.training.reward.model import RewardModule, load_reward_model


def _groups() -> list[RankingGroup]:
    long_prompt = "Prompt: " + " ".join(["please summarise the long story about the river"] * 6)
    return [
        RankingGroup(prompt=long_prompt, completions=[" short", " a longer answer here", " short and more", " x"],
                     ranks=[1, 2, 3, 4]),
        RankingGroup(prompt="Hi.", completions=[" one", " two words"], ranks=[2, 1]),
        # Identical completions: the prefix stops one token short, so every suffix keeps a token.
        RankingGroup(prompt="Same?", completions=[" same", " same", " other"], ranks=[1, 1, 2]),
    ]


def test_shared_prefix_length() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # at least one token left in each row
    assert shared_prefix_length([[7], [7, 8]]) == 0
    assert shared_prefix_length([[1, 2], [3, 4]]) == 0


def _gpt2_reward(tiny_reward_dir: Path, out: Path) -> Path:
    """A tiny random GPT-2 reward model (absolute position embeddings) with the tiny tokenizer."""
    tok = AutoTokenizer.from_pretrained(tiny_reward_dir)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=32, n_layer=2, n_head=2, num_labels=1,
                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_shared_forward_equals_full_forward_with_gradients(tiny_reward_dir: Path, tmp_path: Path, arch: str) -> None:
    path = tiny_reward_dir if arch == "llama" else _gpt2_reward(tiny_reward_dir, tmp_path / "gpt2")
    model, tok = load_reward_model(path)
    module = RewardModule(model)
    assert module.can_share_prefix
    encoded = encode_groups(_groups(), tok, max_length=512)
    full = collate(encoded, tok.pad_token_id)
    shared = collate(encoded, tok.pad_token_id, share_prefix=True)
    assert full.prefix is None and shared.prefix is not None
    assert shared.prefix.input_ids.shape[0] == 3  # one prefix per group, not per completion
    assert shared.prefix.row_group.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2]
    assert shared.n_real_tokens == full.n_real_tokens
    # The long prompt's tokens now run once: far fewer token positions go through the model.
    shared_positions = shared.prefix.input_ids.numel() + shared.input_ids.numel()
    assert shared_positions < 0.6 * full.input_ids.numel()

    def rewards_and_grads(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        module.zero_grad(set_to_none=True)
        rewards = module(**inputs)
        (rewards * torch.arange(1.0, rewards.shape[0] + 1)).sum().backward()
        return rewards.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}

    r_full, g_full = rewards_and_grads(full.model_inputs())
    r_shared, g_shared = rewards_and_grads(shared.model_inputs())
    torch.testing.assert_close(r_shared, r_full, atol=1e-5, rtol=1e-4)
    assert len({round(x, 4) for x in r_full.tolist()}) >= 7  # rewards differ, so the match is not trivial
    assert g_shared.keys() == g_full.keys() and len(g_full) > 5
    for name, grad in g_full.items():
        torch.testing.assert_close(g_shared[name], grad, atol=1e-5, rtol=1e-3)
    # Embedding gradients reach the prompt tokens through the cache.
    embeddings = model.get_input_embeddings().weight
    emb = next(n for n, p in module.named_parameters() if p is embeddings)
    prompt_token = int(shared.prefix.input_ids[0, -1])
    assert float(g_shared[emb][prompt_token].abs().sum()) > 0


def test_training_with_sharing_follows_the_same_curve(tiny_reward_dir: Path, tmp_path: Path) -> None:
    groups = planted_groups(24, k=4, seed=5)
    curves = {}
    for share in (False, True):
        config = RewardTrainConfig(base_model=str(tiny_reward_dir), lr=3e-3, batch_prompts=6, epochs=1, seed=0,
                                   share_prefix=share)
        result = train_reward_model(config, groups, [], tmp_path / str(share))
        curves[share] = result.metrics["loss_curve"]
        assert result.metrics["prefix_sharing"] is share
    assert len(curves[True]) == 4
    assert curves[True] == pytest.approx(curves[False], rel=1e-3, abs=1e-5)


def test_sharing_and_gradient_checkpointing_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="share_prefix"):
        RewardTrainConfig(base_model="x", share_prefix=True, gradient_checkpointing=True)


def test_long_groups_lose_the_same_prompt_tokens() -> None:
    prompt = list(range(100, 130))  # 30 shared tokens
    rows = [prompt + [1, 2], prompt + [3, 4, 5, 6, 7, 8], prompt + [9]]
    fitted = fit_group(rows, max_length=20)
    # The longest row (36 tokens) must lose 16: all rows lose the same 16 prompt tokens.
    assert fitted == [prompt[16:] + [1, 2], prompt[16:] + [3, 4, 5, 6, 7, 8], prompt[16:] + [9]]
    assert shared_prefix_length(fitted) == 14
    assert fit_group(rows, max_length=40) == rows  # short enough: untouched
    # When the shared part cannot absorb the excess, all of it goes (the same context, none, for every
    # completion) and a row still too long keeps its end.
    assert fit_group(rows, max_length=4) == [[1, 2], [5, 6, 7, 8], [9]]
