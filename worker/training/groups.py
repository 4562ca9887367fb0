"""Ranking groups — the reward model's training unit — and the loaders that read them from files.

A group is one prompt with K completions and their ranks (1 = best, ties share a rank). Imported
pairwise comparisons are groups of two. Loaders accept JSONL or JSON in these shapes:

* rankings: `prompt` (text) or `messages` (chat list), `completions`, `ranks`
  — or the seed-doc "rm" shape `prompt`, `completion` (list), `ranking` (smaller is better);
* pairs: `prompt` + `chosen` + `rejected` (strings or chat message lists), or `chosen`/`rejected`
  alone: conversational lists sharing a prefix, or Anthropic-HH transcripts
  (`\\n\\nHuman: … \\n\\nAssistant: …`) whose shared part up to the last assistant turn is the prompt.

Optional fields on every record: `weight` (trust weight of the ranking), `annotator`, `id`/`group_id`,
`prompt_id`. Every bad record is reported with file, line and field; nothing is returned then.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Message = dict[str, str]
Prompt = str | list[Message]

_MAX_REPORTED_ERRORS = 50
_HH_ASSISTANT = "\n\nAssistant:"


class DataError(ValueError):
    """A training/eval data file is malformed; the message lists every problem with file, line and field."""


@dataclass
class RankingGroup:
    """One prompt, K >= 2 completions, and their ranks (1 = best; equal ranks are ties)."""

    prompt: Prompt
    completions: list[str]
    ranks: list[int]
    weight: float = 1.0
    annotator: str | None = None
    group_id: str | None = None
    prompt_id: str | None = None

    def __post_init__(self) -> None:
        if len(self.completions) < 2:
            raise ValueError("a ranking group needs at least 2 completions")
        if len(self.ranks) != len(self.completions):
            raise ValueError(f"{len(self.ranks)} ranks for {len(self.completions)} completions")
        if any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in self.ranks):
            raise ValueError("ranks must be integers >= 1")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError("weight must be a finite number >= 0")

    def pairs(self) -> list[tuple[int, int, int]]:
        """Non-tied pairs as (winner index, loser index, rank gap)."""
        out = []
        for i, j in itertools.combinations(range(len(self.ranks)), 2):
            if self.ranks[i] == self.ranks[j]:
                continue
            w, lo = (i, j) if self.ranks[i] < self.ranks[j] else (j, i)
            out.append((w, lo, abs(self.ranks[i] - self.ranks[j])))
        return out

    def prompt_key(self) -> str:
        """Stable identity of the prompt (prompt_id if given, else a hash of its content) for splitting."""
        if self.prompt_id is not None:
            return self.prompt_id
        text = self.prompt if isinstance(self.prompt, str) else json.dumps(self.prompt, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def render_prompt(prompt: Prompt, completion: str, tokenizer: Any | None = None) -> str:
    """Text the reward model scores for (prompt, completion).

    Chat prompts go through the tokenizer's chat template (completion as the assistant turn) when it
    has one; otherwise the turns are written as "role: content" lines. Text prompts are concatenated.
    """
    if isinstance(prompt, str):
        return prompt + completion
    messages = [*prompt, {"role": "assistant", "content": completion}]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False))
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages)


# --- loading ---------------------------------------------------------------------------------------------


class _Errors:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, line: int, fld: str | None, msg: str) -> None:
        where = f"{self.path}:{line}" + (f": field '{fld}'" if fld else "")
        self.items.append(f"{where}: {msg}")

    def raise_if_any(self) -> None:
        if self.items:
            shown = self.items[:_MAX_REPORTED_ERRORS]
            more = len(self.items) - len(shown)
            tail = f"\n… and {more} more" if more else ""
            raise DataError(f"{len(self.items)} problem(s) in {self.path}:\n" + "\n".join(shown) + tail)


def _read_records(path: Path, errors: _Errors) -> list[tuple[int, Any]]:
    """(line number, parsed object) for a JSONL file, or for each element of a JSON array file."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    stripped = raw.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith("["):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from exc
        if isinstance(data, dict):
            data = data.get("groups", data.get("data"))
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of records (or an object with 'groups')")
        return [(i, rec) for i, rec in enumerate(data, start=1)]
    records = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            errors.add(number, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
    return records


def _check_messages(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "expected a non-empty list of {role, content} messages"
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return "every message needs string 'role' and 'content'"
    return None


def _common_fields(rec: dict[str, Any], line: int, errors: _Errors) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    weight = rec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
        errors.add(line, "weight", "must be a finite number >= 0")
        return None
    out["weight"] = float(weight)
    for key, target in (("annotator", "annotator"), ("prompt_id", "prompt_id"), ("group_id", "group_id"), ("id", "group_id")):
        value = rec.get(key)
        if value is None:
            continue
        if not isinstance(value, str | int) or isinstance(value, bool):
            errors.add(line, key, "must be a string or an integer")
            return None
        out.setdefault(target, str(value))
    return out


def _ranking_from_record(rec: dict[str, Any], line: int, errors: _Errors) -> RankingGroup | None:
    if "messages" in rec:
        problem = _check_messages(rec["messages"])
        if problem:
            errors.add(line, "messages", problem)
            return None
        prompt: Prompt = [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]
    elif isinstance(rec.get("prompt"), str):
        prompt = rec["prompt"]
    elif isinstance(rec.get("prompt"), list) and _check_messages(rec["prompt"]) is None:
        prompt = [{"role": m["role"], "content": m["content"]} for m in rec["prompt"]]
    else:
        errors.add(line, "prompt", "missing or not a string / message list (or give 'messages')")
        return None
    seed_format = "completions" not in rec and "completion" in rec
    comp_key, rank_key = ("completion", "ranking") if seed_format else ("completions", "ranks")
    completions = rec.get(comp_key)
    if not isinstance(completions, list) or len(completions) < 2 or not all(isinstance(c, str) for c in completions):
        errors.add(line, comp_key, "expected a list of at least 2 strings")
        return None
    ranks = rec.get(rank_key)
    if not isinstance(ranks, list) or len(ranks) != len(completions):
        errors.add(line, rank_key, f"expected a list of {len(completions)} ranks (one per completion)")
        return None
    if not all(isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r) for r in ranks):
        errors.add(line, rank_key, "ranks must be numbers")
        return None
    if seed_format or any(isinstance(r, float) for r in ranks) or min(ranks) < 1:
        ranks = _dense_ranks(ranks)
    elif any(r < 1 for r in ranks):
        errors.add(line, rank_key, "ranks must be >= 1 (1 = best)")
        return None
    common = _common_fields(rec, line, errors)
    if common is None:
        return None
    if len(set(ranks)) == 1:
        errors.add(line, rank_key, "all completions tied: the ranking carries no preference")
        return None
    return RankingGroup(prompt=prompt, completions=list(completions), ranks=[int(r) for r in ranks], **common)


def _dense_ranks(values: Sequence[float]) -> list[int]:
    """Map sortable scores (smaller = better) to dense ranks 1..n, keeping ties."""
    order = {v: i + 1 for i, v in enumerate(sorted(set(values)))}
    return [order[v] for v in values]


def _split_hh(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """Split two Anthropic-HH transcripts into (shared prompt ending with 'Assistant:', chosen, rejected)."""
    prefix_len = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        prefix_len += 1
    cut = chosen.rfind(_HH_ASSISTANT, 0, prefix_len + 1)
    if cut < 0:
        return None
    cut += len(_HH_ASSISTANT)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _pair_from_record(rec: dict[str, Any], line: int, errors: _Errors) -> RankingGroup | None:
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    prompt_value = rec.get("prompt", rec.get("messages"))
    prompt: Prompt
    if isinstance(chosen, str) and isinstance(rejected, str):
        if isinstance(prompt_value, str):
            prompt = prompt_value
        elif isinstance(prompt_value, list) and _check_messages(prompt_value) is None:
            prompt = [{"role": m["role"], "content": m["content"]} for m in prompt_value]
        elif prompt_value is None:
            split = _split_hh(chosen, rejected)
            if split is None:
                errors.add(line, "prompt", "missing, and chosen/rejected are not HH transcripts sharing a prompt")
                return None
            prompt, chosen, rejected = split
        else:
            errors.add(line, "prompt", "must be a string or a message list")
            return None
    elif isinstance(chosen, list) and isinstance(rejected, list):
        for key, value in (("chosen", chosen), ("rejected", rejected)):
            problem = _check_messages(value)
            if problem:
                errors.add(line, key, problem)
                return None
        if prompt_value is not None:
            problem = _check_messages(prompt_value)
            if problem:
                errors.add(line, "prompt", problem)
                return None
            prefix = list(prompt_value)
            chosen_tail, rejected_tail = chosen, rejected
            # TRL's conversational format may repeat the prompt inside chosen/rejected; drop it there.
            if chosen[: len(prefix)] == prefix and rejected[: len(prefix)] == prefix:
                chosen_tail, rejected_tail = chosen[len(prefix) :], rejected[len(prefix) :]
        else:
            n = 0
            while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
                n += 1
            prefix, chosen_tail, rejected_tail = chosen[:n], chosen[n:], rejected[n:]
        for key, tail in (("chosen", chosen_tail), ("rejected", rejected_tail)):
            if len(tail) != 1 or tail[0].get("role") != "assistant":
                errors.add(line, key, "expected exactly one final assistant message after the shared prompt")
                return None
        if not prefix:
            errors.add(line, "prompt", "chosen and rejected share no prompt messages")
            return None
        prompt = [{"role": m["role"], "content": m["content"]} for m in prefix]
        chosen, rejected = chosen_tail[0]["content"], rejected_tail[0]["content"]
    else:
        fld = "chosen" if not isinstance(chosen, str | list) else "rejected"
        errors.add(line, fld, "missing, or chosen and rejected are not both strings / both message lists")
        return None
    common = _common_fields(rec, line, errors)
    if common is None:
        return None
    return RankingGroup(prompt=prompt, completions=[chosen, rejected], ranks=[1, 2], **common)


def _load(path: str | Path, kind: str) -> list[RankingGroup]:
    p = Path(path)
    errors = _Errors(p)
    groups: list[RankingGroup] = []
    for line, rec in _read_records(p, errors):
        if not isinstance(rec, dict):
            errors.add(line, None, "expected a JSON object")
            continue
        is_pair = "chosen" in rec or "rejected" in rec
        if kind == "pairs" and not is_pair:
            errors.add(line, "chosen", "missing (a pairs file needs chosen and rejected)")
            continue
        if kind == "rankings" and is_pair:
            errors.add(line, "chosen", "a rankings file takes completions + ranks, not chosen/rejected")
            continue
        group = _pair_from_record(rec, line, errors) if is_pair else _ranking_from_record(rec, line, errors)
        if group is not None:
            groups.append(group)
    errors.raise_if_any()
    if not groups:
        raise DataError(f"{p}: no records")
    return groups


def load_groups(path: str | Path) -> list[RankingGroup]:
    """Load a rankings or pairs file (auto-detected per record) into ranking groups.

    Raises DataError listing every bad record (file:line: field 'x': reason); returns nothing partial.
    """
    return _load(path, "any")


def load_rankings(path: str | Path) -> list[RankingGroup]:
    """Load a rankings file (every record a ranking; see the module docstring for the shapes)."""
    return _load(path, "rankings")


def load_pairs(path: str | Path) -> list[RankingGroup]:
    """Load a pairwise file (`prompt`/`chosen`/`rejected`, chat lists or HH transcripts) as groups of 2."""
    return _load(path, "pairs")


def split_by_prompt(
    groups: Sequence[RankingGroup], heldout_fraction: float, seed: int = 0
) -> tuple[list[RankingGroup], list[RankingGroup]]:
    """Split groups into (train, held-out) so that all rankings of one prompt land on the same side."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError("heldout_fraction must be in [0, 1)")
    keys = sorted({g.prompt_key() for g in groups})
    random.Random(seed).shuffle(keys)
    n_held = round(len(keys) * heldout_fraction)
    if heldout_fraction > 0 and n_held == 0 and len(keys) > 1:
        n_held = 1
    held = set(keys[:n_held])
    train = [g for g in groups if g.prompt_key() not in held]
    heldout = [g for g in groups if g.prompt_key() in held]
    return train, heldout


def count_pairs(groups: Iterable[RankingGroup]) -> int:
    """Number of non-tied comparisons in `groups`."""
    return sum(len(g.pairs()) for g in groups)
