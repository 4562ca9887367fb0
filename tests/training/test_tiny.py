"""Tests for the locally created tiny tokenizer and models (worker/training/tiny.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from worker.commands.models import cli
from worker.training.tiny import default_texts, init_tiny, train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return init_tiny(tmp_path_factory.mktemp("tiny"), default_texts())


def test_tokenizer_has_special_tokens_and_chat_template() -> None:
    tok = train_tokenizer(default_texts(), vocab_size=400)
    assert len(tok) <= 400
    assert {tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id} == {0, 1, 2, 3}
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|user|>\nHi") and text.endswith("<|assistant|>\n")
    # Byte-level: text never seen in training round-trips.
    assert tok.decode(tok("Ünïcode ☃ 😀 tabs\tand\nnewlines").input_ids) == "Ünïcode ☃ 😀 tabs\tand\nnewlines"


def test_tokenizer_is_deterministic() -> None:
    a = train_tokenizer(default_texts())
    b = train_tokenizer(default_texts())
    assert a.get_vocab() == b.get_vocab()


def test_tiny_models_load_offline_and_run(tiny_dir: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir["policy"])
    policy = AutoModelForCausalLM.from_pretrained(tiny_dir["policy"])
    n_params = sum(p.numel() for p in policy.parameters())
    assert 100_000 < n_params < 1_000_000
    assert policy.generation_config.eos_token_id == tok.eos_token_id
    assert policy.generation_config.pad_token_id == tok.pad_token_id
    ids = tok("The assistant", return_tensors="pt")
    out = policy.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] <= ids["input_ids"].shape[1] + 4

    reward = AutoModelForSequenceClassification.from_pretrained(tiny_dir["reward"])
    assert reward.config.num_labels == 1 and reward.config.pad_token_id == tok.pad_token_id
    batch = tok(["short", "a much longer text here"], padding=True, return_tensors="pt")
    assert reward(**batch).logits.shape == (2, 1)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = init_tiny(tmp_path / "a", default_texts(), seed=3)
    b = init_tiny(tmp_path / "b", default_texts(), seed=3)
    c = init_tiny(tmp_path / "c", default_texts(), seed=4)
    wa = (a["reward"] / "model.safetensors").read_bytes()
    assert wa == (b["reward"] / "model.safetensors").read_bytes()
    assert wa != (c["reward"] / "model.safetensors").read_bytes()


def test_cli_init_tiny_with_jsonl_texts(tmp_path: Path) -> None:
    texts = tmp_path / "prompts.jsonl"
    texts.write_text("\n".join(f'{{"prompt": "question number {i} about apples"}}' for i in range(50)))
    result = CliRunner().invoke(cli, ["init-tiny", str(tmp_path / "m"), "--texts-file", str(texts)])
    assert result.exit_code == 0, result.output
    assert '"policy"' in result.output and (tmp_path / "m" / "reward" / "config.json").is_file()


def test_cli_init_tiny_rejects_bad_jsonl(tmp_path: Path) -> None:
    texts = tmp_path / "prompts.jsonl"
    texts.write_text('{"prompt": "ok"}\n{broken\n')
    # Wide terminal so the error box does not wrap the long temporary path.
    result = CliRunner().invoke(
        cli, ["init-tiny", str(tmp_path / "m"), "--texts-file", str(texts)], env={"COLUMNS": "500"}
    )
    assert result.exit_code != 0
    assert "prompts.jsonl:2: invalid JSON" in result.output
