"""Reward read at the last real token regardless of padding side; pad token added when missing."""

from __future__ import annotations

from pathlib import Path

import torch

from worker.training.reward.batching import pad_rows
from worker.training.reward.model import RewardModule, ensure_pad_token, load_reward_model


def test_last_token_scoring_same_for_left_right_and_no_padding(tiny_reward_dir: Path) -> None:
    model, tok = load_reward_model(tiny_reward_dir)
    module = RewardModule(model).eval()
    rows = [tok(t)["input_ids"] for t in ("a short one", "a much longer text with several more words in it", "x")]
    with torch.no_grad():
        alone = [module(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.long)).item() for r in rows]
        right = module(*pad_rows(rows, tok.pad_token_id, "right")).tolist()
        left = module(*pad_rows(rows, tok.pad_token_id, "left")).tolist()
        # The pad id must not matter either (pad == a real token id, as when pad = eos).
        odd_pad = module(*pad_rows(rows, rows[0][0], "right")).tolist()
    for a, r, lf, o in zip(alone, right, left, odd_pad, strict=True):
        assert abs(a - r) < 1e-5 and abs(a - lf) < 1e-5 and abs(a - o) < 1e-5
    # Sanity: scores differ between texts, so the comparison above is not trivially true.
    assert len({round(a, 4) for a in alone}) == 3


def test_pad_token_is_set_when_missing(tiny_reward_dir: Path) -> None:
    model, tok = load_reward_model(tiny_reward_dir)
    tok.pad_token = None
    model.config.pad_token_id = None
    ensure_pad_token(model, tok)
    assert tok.pad_token == tok.eos_token
    assert model.config.pad_token_id == tok.eos_token_id
