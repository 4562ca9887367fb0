"""Loaders for rankings and pairs files, prompt rendering, and the split by prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.training.groups import (
    DataError,
    RankingGroup,
    load_groups,
    load_pairs,
    load_rankings,
    render_prompt,
    split_by_prompt,
)
from worker.training.tiny import default_texts, train_tokenizer


def _jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_rankings_all_shapes(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "r.jsonl", [
        {"prompt": "P", "completions": ["a", "b", "c"], "ranks": [2, 1, 2], "weight": 0.5, "annotator": "ann1", "id": 7},
        {"messages": [{"role": "user", "content": "hi"}], "completions": ["x", "y"], "ranks": [1, 2]},
        {"prompt": "Q", "completion": ["u", "v", "w"], "ranking": [3, 1, 2]},  # seed "rm" format, smaller better
    ])
    g = load_rankings(f)
    assert g[0].ranks == [2, 1, 2] and g[0].weight == 0.5 and g[0].annotator == "ann1" and g[0].group_id == "7"
    assert sorted(g[0].pairs()) == [(1, 0, 1), (1, 2, 1)]  # the tie (0, 2) is not a pair
    assert g[1].prompt == [{"role": "user", "content": "hi"}]
    assert g[2].completions == ["u", "v", "w"] and g[2].ranks == [3, 1, 2]


def test_pairs_plain_conversational_and_hh(tmp_path: Path) -> None:
    hh_prompt = "\n\nHuman: How do I bake bread?\n\nAssistant: Use flour.\n\nHuman: And then?\n\nAssistant:"
    f = _jsonl(tmp_path / "p.jsonl", [
        {"prompt": "P", "chosen": " good", "rejected": " bad"},
        {"prompt": [{"role": "user", "content": "hi"}],
         "chosen": [{"role": "assistant", "content": "hello"}], "rejected": [{"role": "assistant", "content": "go"}]},
        {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}],
         "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "B"}]},
        {"chosen": hh_prompt + " Knead it.", "rejected": hh_prompt + " Eat it raw."},
    ])
    g = load_pairs(f)
    assert [x.ranks for x in g] == [[1, 2]] * 4
    assert g[1].prompt == [{"role": "user", "content": "hi"}] and g[1].completions == ["hello", "go"]
    assert g[2].prompt == [{"role": "user", "content": "q"}] and g[2].completions == ["A", "B"]
    assert g[3].prompt == hh_prompt and g[3].completions == [" Knead it.", " Eat it raw."]
    assert len(load_groups(f)) == 4


def test_json_array_file(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text(json.dumps([{"prompt": "P", "completions": ["a", "b"], "ranks": [1, 2]}]))
    assert load_rankings(f)[0].completions == ["a", "b"]


def test_errors_name_file_line_and_field_and_load_nothing(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "ok", "completions": ["a", "b"], "ranks": [1, 2]},
        "{not json",
        {"completions": ["a", "b"], "ranks": [1, 2]},
        {"prompt": "P", "completions": ["a"], "ranks": [1]},
        {"prompt": "P", "completions": ["a", "b"], "ranks": [1]},
        {"prompt": "P", "completions": ["a", "b"], "ranks": [1, 2], "weight": -1},
        {"prompt": "P", "completions": ["a", "b"], "ranks": [1, 1]},
        {"chosen": "x", "rejected": "y"},
    ])
    with pytest.raises(DataError) as info:
        load_groups(f)
    msg = str(info.value)
    assert "7 problem(s)" in msg
    for expected in (
        "bad.jsonl:2: invalid JSON",
        "bad.jsonl:3: field 'prompt'",
        "bad.jsonl:4: field 'completions'",
        "bad.jsonl:5: field 'ranks'",
        "bad.jsonl:6: field 'weight'",
        "bad.jsonl:7: field 'ranks': all completions tied",
        "bad.jsonl:8: field 'prompt'",
    ):
        assert expected in msg
    with pytest.raises(DataError, match=r"p.jsonl:1: field 'chosen'"):
        load_pairs(_jsonl(tmp_path / "p.jsonl", [{"prompt": "P", "completions": ["a", "b"], "ranks": [1, 2]}]))
    with pytest.raises(DataError, match="not UTF-8"):
        (tmp_path / "latin.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
        load_groups(tmp_path / "latin.jsonl")


def test_render_prompt_uses_chat_template_for_messages() -> None:
    tok = train_tokenizer(default_texts())
    assert render_prompt("Hello", " world", tok) == "Hello world"
    chat = render_prompt([{"role": "user", "content": "Hi"}], "Yo", tok)
    assert chat == "<|user|>\nHi<|eos|>\n<|assistant|>\nYo<|eos|>\n"
    assert render_prompt([{"role": "user", "content": "Hi"}], "Yo", None) == "user: Hi\nassistant: Yo\n"


def test_split_by_prompt_never_splits_a_prompt() -> None:
    groups = [RankingGroup(prompt=f"p{i % 10}", completions=["a", "b"], ranks=[1, 2], annotator=str(i)) for i in range(40)]
    train, held = split_by_prompt(groups, 0.3, seed=1)
    assert len(train) + len(held) == 40 and held
    assert not {g.prompt_key() for g in train} & {g.prompt_key() for g in held}
    assert split_by_prompt(groups, 0.3, seed=1) == (train, held)
