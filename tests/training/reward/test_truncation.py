"""Truncation keeps the completion's end and the prompt's latest turns, and every cut is counted."""

from __future__ import annotations

from pathlib import Path

from worker.training.groups import RankingGroup
from worker.training.reward.batching import (
    drop_oldest_turn,
    encode_groups,
    encode_texts,
    fit_group,
    truncation_report,
)
from worker.training.reward.model import load_reward_model

from .conftest import tokenizer_with_bos


def _chat(turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "Be kind."}]
    for i in range(turns):
        messages += [{"role": "user", "content": f"Question number {i} about the weather report today?"},
                     {"role": "assistant", "content": f"Answer {i}: the quick brown fox jumps over the lazy dog."}]
    return [*messages, {"role": "user", "content": "And the last question, please?"}]


def test_fit_group_keeps_leading_special_tokens_and_the_end() -> None:
    rows = [[0, 1, 2, 3, 4, 5, 6, 70, 71], [0, 1, 2, 3, 4, 5, 6, 80]]
    assert fit_group(rows, max_length=5, keep_head=1) == [[0, 5, 6, 70, 71], [0, 5, 6, 80]]
    own = [[0, 1, 2, 3, 90, 91, 92, 93, 94], [0, 1, 2, 3, 80]]
    # The shared prompt loses the same tokens in both rows; only the long completion then loses its own start.
    assert fit_group(own, max_length=4, keep_head=1) == [[0, 92, 93, 94], [0, 80]]


def test_oldest_turns_go_first_and_the_system_message_stays() -> None:
    chat = _chat(3)
    shorter = drop_oldest_turn(chat)
    assert shorter is not None and shorter[0]["role"] == "system" and shorter[1]["content"].startswith("Question number 1")
    assert drop_oldest_turn([{"role": "user", "content": "only"}]) is None
    hh = "\n\nHuman: first?\n\nAssistant: one.\n\nHuman: second?\n\nAssistant:"
    assert drop_oldest_turn(hh) == "\n\nHuman: second?\n\nAssistant:"
    assert drop_oldest_turn("\n\nHuman: only?\n\nAssistant:") is None


def test_long_chat_keeps_latest_turns_and_completion_end(tiny_encoder_dir: Path) -> None:
    _, tok = load_reward_model(tiny_encoder_dir)
    chosen = " The rain stops at noon, so the walk is fine: bring a light coat and enjoy the sun."
    rejected = " No idea, ask someone else."
    group = RankingGroup(prompt=_chat(6), completions=[chosen, rejected], ranks=[1, 2])
    [full] = encode_groups([group], tok, max_length=10_000)
    [fitted] = encode_groups([group], tok, max_length=120)
    assert max(len(r) for r in full.input_ids) > 120 >= max(len(r) for r in fitted.input_ids)
    assert fitted.turns_dropped >= 1 and fitted.input_ids[0][0] == tok.bos_token_id  # the [CLS]-like start stays
    text = tok.decode(fitted.input_ids[0])
    assert "last question" in text and chosen.strip() in text  # newest turn and the whole completion survive
    assert "Question number 0" not in text
    report = truncation_report([fitted])
    assert report["pairs_cut"] == 1 and report["turns_dropped"] == fitted.turns_dropped
    assert report["tokens_removed"] == sum(len(a) - len(b) for a, b in zip(full.input_ids, fitted.input_ids, strict=True))


def test_a_completion_too_long_on_its_own_loses_its_start_and_is_counted() -> None:
    tok = tokenizer_with_bos(["apple river stone cloud table green quick paper"] * 5)
    long = " " + " ".join(["apple", "river", "stone"] * 30) + " THE END"
    groups = [RankingGroup(prompt="Say:", completions=[long, " short"], ranks=[1, 2]),
              RankingGroup(prompt="Say:", completions=[" same", " same"], ranks=[1, 2])]
    encoded = encode_groups(groups, tok, max_length=40)
    row = encoded[0].input_ids[0]
    assert len(row) == 40 and row[0] == tok.bos_token_id and tok.decode(row).endswith("THE END")
    assert encoded[0].completion_cut == [True, False]
    assert encoded[1].pairs == [] and encoded[1].identical_pairs == 1  # nothing to learn from identical sides
    report = truncation_report(encoded)
    assert report["pairs_with_completion_cut"] == 1 and report["sequences_cut"] == 2  # the short one lost prompt
    assert report["identical_pairs_left_out"] == 1 and report["max_tokens_removed"] > 0


def test_scoring_single_texts_keeps_the_start_token_and_the_end() -> None:
    tok = tokenizer_with_bos(["apple river stone cloud table green quick paper"] * 5)
    [row] = encode_texts(tok, ["Say:" + " apple river stone" * 30 + " THE END"], max_length=16)
    assert len(row) == 16 and row[0] == tok.bos_token_id and tok.decode(row).endswith("THE END")
    assert encode_texts(tok, ["short"], max_length=16) == [tok("short")["input_ids"]]
