"""Heads that fit the backbone: mean pooling for encoders (and sentence-transformers exports), last token for
decoders, the choice saved with the checkpoint; dropout off in training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from worker.training.dropout import disable_dropout
from worker.training.reward import RewardScorer, RewardTrainConfig, train_reward_model
from worker.training.reward.batching import pad_rows
from worker.training.reward.model import RewardModule, load_reward_model

from .conftest import planted_groups


def _rows(tok) -> list[list[int]]:  # type: ignore[no-untyped-def]
    return [tok(t)["input_ids"] for t in ("a short one", "a much longer text with several more words in it", "x")]


def test_encoder_defaults_to_mean_pooling_over_real_tokens(tiny_encoder_dir: Path) -> None:
    model, tok = load_reward_model(tiny_encoder_dir)
    module = RewardModule(model).eval()
    assert module.pooling == "mean" and model.config.reward_pooling == "mean"
    assert model.base_model.pooler is None  # the untrained [CLS] pooler is not in the path
    rows = _rows(tok)
    with torch.no_grad():
        padded = module(*pad_rows(rows, tok.pad_token_id, "right")).tolist()
        for i, r in enumerate(rows):
            ids = torch.tensor([r])
            hidden = model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            by_hand = model.classifier(hidden.mean(1))[0, 0].item()
            assert padded[i] == pytest.approx(by_hand, abs=1e-5)  # padding never enters the mean
        head = RewardModule(load_reward_model(tiny_encoder_dir, pooling="head")[0]).eval()
        assert head.pooling == "head"
        assert head(*pad_rows(rows, tok.pad_token_id)).tolist() != pytest.approx(padded, abs=1e-3)


def test_decoder_keeps_last_token_and_bad_requests_are_refused(tiny_reward_dir: Path) -> None:
    model, _ = load_reward_model(tiny_reward_dir)
    assert RewardModule(model).pooling == "last"
    with pytest.raises(ValueError, match="linear `classifier`"):
        load_reward_model(tiny_reward_dir, pooling="mean")


def test_sentence_transformers_export_and_old_checkpoints(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "st"
    shutil.copytree(tiny_encoder_dir, export)
    (export / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (export / "1_Pooling").mkdir()
    (export / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                  "pooling_mode_mean_tokens": False}))
    assert load_reward_model(export)[0].config.reward_pooling == "cls"
    (export / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert load_reward_model(export)[0].config.reward_pooling == "mean"
    # A prefloop checkpoint written before pooling was configurable was trained through the model's head.
    old = tmp_path / "old"
    shutil.copytree(tiny_encoder_dir, old)
    (old / "meta.json").write_text("{}")
    assert load_reward_model(old)[0].config.reward_pooling == "head"


def test_mean_pooled_encoder_trains_and_scores_the_same_after_reload(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    config = RewardTrainConfig(base_model=str(tiny_encoder_dir), lr=3e-3, epochs=3, batch_prompts=8)
    train, heldout = planted_groups(96), planted_groups(24, seed=1, prefix="h")
    result = train_reward_model(config, train, heldout, tmp_path / "o")
    assert result.metrics["pooling"] == "mean" and result.metrics["heldout"]["accuracy"] >= 0.8
    saved = json.loads((tmp_path / "o" / "model" / "config.json").read_text())
    assert saved["reward_pooling"] == "mean"
    scorer = RewardScorer(tmp_path / "o")
    assert scorer.module.pooling == "mean"
    assert scorer.evaluate(heldout)["accuracy"] == pytest.approx(result.metrics["heldout"]["accuracy"])


def test_disable_dropout_reaches_modules_and_attention_rates(tiny_encoder_dir: Path) -> None:
    model, _ = load_reward_model(tiny_encoder_dir)
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    model.bert.encoder.layer[0].attention.self.attention_dropout = 0.1  # a float rate, as Llama-style attention has
    disable_dropout(model)
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert model.bert.encoder.layer[0].attention.self.attention_dropout == 0.0
    model.train()
    ids = torch.tensor([[5, 6, 7, 8]])
    module = RewardModule(model)
    assert module(ids, torch.ones_like(ids)).item() == module(ids, torch.ones_like(ids)).item()
