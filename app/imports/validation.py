"""Checking one raw record and turning it into a `PromptIn`, or into every problem it has.

Policy for untrusted text: NUL bytes are refused (Postgres cannot store them and nothing legitimate
needs them); bidi overrides and other control characters are kept as text, since the pages escape and
isolate content rather than trusting it. No URL in the data is ever fetched.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from app.imports.pairwise import PairError, read_pair
from app.imports.schemas import (
    MAX_COMPLETIONS,
    MAX_FIELD_BYTES,
    CompletionIn,
    ImportIssue,
    PromptIn,
    RankingIn,
    RawRecord,
)

ROLES = frozenset({"system", "user", "assistant", "tool"})
# Longer digit strings are identifiers, not quantities (and Python refuses ints over 4,300 digits).
_MAX_NUMBER_CHARS = 300
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_RESERVED = {"id", "prompt", "messages", "system", "metadata", "completions", "completion", "chosen", "rejected",
             "rankings", "demonstrations"}
MAX_RATIONALE_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class Rules:
    """The project limits a record is checked against."""

    k_min: int
    allow_fewer_than_k_min: bool


class _Issues(list[ImportIssue]):
    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line

    def add(self, field: str, reason: str) -> None:
        self.append(ImportIssue(self.line, field, reason))


def content_hash(text: str | None, messages: list[dict[str, Any]] | None, system: str | None) -> str:
    """A stable hash of what a prompt says (the default external id, so re-imports are recognised)."""
    canonical = json.dumps({"t": text, "m": messages, "s": system}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalize(raw: RawRecord, rules: Rules) -> PromptIn | list[ImportIssue]:
    """The validated prompt of one record, or the list of its problems (all of them, not just the first)."""
    data = raw.data
    issues = _Issues(raw.line)
    if "chosen" in data or "rejected" in data:
        return _normalize_pair(raw, issues)

    text, messages = _prompt_of(data, issues)
    system = _optional_text(data.get("system"), "system", issues)
    completions = _completions_of(data, raw.tabular, issues)
    if completions and len(completions) > MAX_COMPLETIONS:
        issues.add("completions", f"{len(completions)} completions; at most {MAX_COMPLETIONS} are allowed")
    elif completions and len(completions) < rules.k_min and not rules.allow_fewer_than_k_min:
        issues.add(
            "completions",
            f"{len(completions)} completion(s) but the project ranks at least k_min={rules.k_min} "
            "(give more, none, or allow fewer than k_min in the project settings)",
        )
    rankings = _rankings_of(data.get("rankings"), len(completions), issues)
    demonstrations = _demonstrations_of(data.get("demonstrations"), issues)
    meta = _metadata_of(data, raw.tabular, issues)
    external_id, id_given = _external_id(data, issues)
    if issues:
        return list(issues)
    digest = content_hash(text, messages, system)
    if external_id is None:
        key = data.get("_key")
        external_id = hashlib.sha256(json.dumps(key).encode()).hexdigest() if key else digest
    return PromptIn(raw.line, external_id, digest, text, messages, system, meta, completions, rankings,
                    id_given=id_given, demonstrations=demonstrations)


def _demonstrations_of(value: Any, issues: _Issues) -> list[str]:
    """The record's demonstrations (ideal answers, the SFT data): `["…", …]`, each kept once."""
    if value is None:
        return []
    if not isinstance(value, list):
        issues.add("demonstrations", "expected a list of texts")
        return []
    out: list[str] = []
    for i, item in enumerate(value):
        text = _text(item, f"demonstrations[{i}]", issues)
        if text is not None and text.strip() not in out:
            out.append(text.strip())
    return out


def _rankings_of(value: Any, k: int, issues: _Issues) -> list[RankingIn]:
    """K-wise rankings of the record's completions: `[{"ranks": [rank or null per completion], ...}]`."""
    if value is None:
        return []
    if not isinstance(value, list):
        issues.add("rankings", "expected a list of {ranks: [...]} objects")
        return []
    out: list[RankingIn] = []
    for i, item in enumerate(value):
        where = f"rankings[{i}]"
        ranks = item.get("ranks") if isinstance(item, dict) else None
        if not isinstance(ranks, list) or len(ranks) != k:
            issues.add(f"{where}.ranks", f"expected one rank (or null) per completion: {k} values")
            continue
        if any(r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1) for r in ranks):
            issues.add(f"{where}.ranks", "ranks are whole numbers from 1 (best), or null for an unranked answer")
            continue
        given = {index: rank for index, rank in enumerate(ranks) if rank is not None}
        if len(given) < 2 or len(set(given.values())) < 2:
            issues.add(f"{where}.ranks", "a ranking needs at least two answers with different ranks")
            continue
        rationale = item.get("rationale") or ""
        if not isinstance(rationale, str) or len(rationale) > MAX_RATIONALE_CHARS or "\x00" in rationale:
            issues.add(f"{where}.rationale", f"expected text of at most {MAX_RATIONALE_CHARS} characters without NUL")
            continue
        origin = item.get("origin") or {}
        out.append(RankingIn(dense_ranks(given), rationale, origin if isinstance(origin, dict) else {}))
    return out


def dense_ranks(ranks: dict[int, int]) -> dict[int, int]:
    """The same order with ranks 1, 2, 3… and no gaps ({a: 1, b: 3, c: 3} -> {a: 1, b: 2, c: 2})."""
    dense = {rank: position for position, rank in enumerate(sorted(set(ranks.values())), start=1)}
    return {index: dense[rank] for index, rank in ranks.items()}


def _normalize_pair(raw: RawRecord, issues: _Issues) -> PromptIn | list[ImportIssue]:
    data = raw.data
    for field in ("chosen", "rejected"):
        if data.get(field) in (None, "", []):
            issues.add(field, "missing or empty")
    if issues:
        return list(issues)
    try:
        pair = read_pair(data)
    except PairError as exc:
        issues.add(exc.field, str(exc))
        return list(issues)
    text = _text(pair.text, "prompt", issues) if pair.text is not None else None
    messages = _messages(pair.messages, "prompt", issues) if pair.messages is not None else None
    if text is None and messages is None and not issues:
        issues.add("prompt", "missing prompt")
    chosen = _text(pair.chosen, "chosen", issues)
    rejected = _text(pair.rejected, "rejected", issues)
    if chosen is not None and chosen == rejected:
        issues.add("rejected", "chosen and rejected are identical")
    system = _optional_text(data.get("system"), "system", issues)
    meta = _metadata_of(data, raw.tabular, issues)
    external_id, id_given = _external_id(data, issues)
    if issues or chosen is None or rejected is None:
        return list(issues)
    digest = content_hash(text, messages, system)
    return PromptIn(
        raw.line,
        external_id or digest,
        digest,
        text,
        messages,
        system,
        meta,
        [CompletionIn(chosen), CompletionIn(rejected)],
        [RankingIn({0: 1, 1: 2}, origin=_origin_of(data))],
        id_given=id_given,
    )


def _origin_of(data: dict[str, Any]) -> dict[str, Any]:
    origin = data.get("_origin")
    return origin if isinstance(origin, dict) else {}


def _prompt_of(data: dict[str, Any], issues: _Issues) -> tuple[str | None, list[dict[str, str]] | None]:
    prompt, messages = data.get("prompt"), data.get("messages")
    if isinstance(prompt, list) and messages is None:
        prompt, messages = None, prompt
    if messages is not None:
        return None, _messages(messages, "messages", issues)
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        issues.add("prompt", "missing prompt (give `prompt` text or a `messages` list)")
        return None, None
    return _text(prompt, "prompt", issues), None


def _messages(value: Any, field: str, issues: _Issues) -> list[dict[str, str]] | None:
    if not isinstance(value, list) or not value:
        issues.add(field, "expected a non-empty list of {role, content} messages")
        return None
    out: list[dict[str, str]] = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            issues.add(where, "expected an object with role and content")
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            issues.add(f"{where}.role", f"role must be one of {', '.join(sorted(ROLES))}")
            continue
        checked = _text(content, f"{where}.content", issues)
        if checked is not None:
            out.append({"role": role, "content": checked})
    return out


def _text(value: Any, field: str, issues: _Issues) -> str | None:
    if not isinstance(value, str):
        issues.add(field, f"expected text, got {type(value).__name__}")
        return None
    if not value.strip():
        issues.add(field, "empty text")
        return None
    return _checked_string(value, field, issues)


def _optional_text(value: Any, field: str, issues: _Issues) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value, field, issues)


def _checked_string(value: str, field: str, issues: _Issues) -> str | None:
    if "\x00" in value:
        issues.add(field, f"contains a NUL byte at character {value.index(chr(0)) + 1}")
        return None
    # Four bytes per character at most: only long strings need the exact UTF-8 size.
    if len(value) * 4 > MAX_FIELD_BYTES:
        size = len(value.encode("utf-8", errors="surrogatepass"))
        if size > MAX_FIELD_BYTES:
            issues.add(field, f"{size} bytes; at most {MAX_FIELD_BYTES} bytes (1 MB) per field")
            return None
    return value


def _completions_of(data: dict[str, Any], tabular: bool, issues: _Issues) -> list[CompletionIn]:
    value = data.get("completions")
    if value is None:
        return _wide_completions(data, issues) if tabular else []
    if not isinstance(value, list):
        issues.add("completions", "expected a list of strings or {text, model} objects")
        return []
    out: list[CompletionIn] = []
    for i, item in enumerate(value):
        where = f"completions[{i}]"
        if isinstance(item, str):
            text = _text(item, where, issues)
            if text is not None:
                out.append(CompletionIn(text))
            continue
        if not isinstance(item, dict):
            issues.add(where, "expected a string or an object with `text`")
            continue
        text = _text(item.get("text"), f"{where}.text", issues)
        model = _optional_text(item.get("model"), f"{where}.model", issues)
        if model is not None and len(model) > 200:
            issues.add(f"{where}.model", "model name longer than 200 characters")
        meta = item.get("metadata") or {}
        if not isinstance(meta, dict):
            issues.add(f"{where}.metadata", "expected an object")
            meta = {}
        meta = _checked_meta(meta, f"{where}.metadata", issues, numbers=tabular)
        if text is not None:
            out.append(CompletionIn(text, model, meta))
    return out


def _wide_completions(data: dict[str, Any], issues: _Issues) -> list[CompletionIn]:
    # Wide CSV: a `completion` column and/or `completion_1`, `completion_2`, … in numeric order.
    names = [c for c in data if c == "completion" or re.fullmatch(r"completion_?\d+", c)]
    names.sort(key=lambda c: int(re.sub(r"\D", "", c) or 0))
    out: list[CompletionIn] = []
    for name in names:
        cell = data.get(name)
        if cell is None or not str(cell).strip():
            continue
        text = _text(cell, name, issues)
        if text is not None:
            out.append(CompletionIn(text))
    return out


def _metadata_of(data: dict[str, Any], tabular: bool, issues: _Issues) -> dict[str, Any]:
    meta = data.get("metadata") or {}
    if not isinstance(meta, dict):
        issues.add("metadata", "expected an object")
        return {}
    if tabular and "completions" not in data:
        # Wide CSV: every column that is not structural is metadata.
        extra = {
            k: v for k, v in data.items()
            if k not in _RESERVED and not re.fullmatch(r"completion_?\d+", k) and v not in (None, "")
        }
        meta = {**extra, **meta}
    return _checked_meta(meta, "metadata", issues, numbers=tabular)


def _checked_meta(meta: dict[str, Any], field: str, issues: _Issues, numbers: bool) -> dict[str, Any]:
    if numbers:
        meta = {k: _number(v) for k, v in meta.items()}
    encoded = json.dumps(meta, ensure_ascii=False)
    if "\\u0000" in encoded:
        issues.add(field, "contains a NUL byte")
    elif len(encoded.encode()) > MAX_FIELD_BYTES:
        issues.add(field, f"larger than {MAX_FIELD_BYTES} bytes (1 MB)")
    return meta


def _number(value: Any) -> Any:
    # CSV cells are text; numeric metadata (scores such as toxicity) is far more useful as numbers.
    if isinstance(value, str) and len(value) <= _MAX_NUMBER_CHARS and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        if not math.isfinite(number):  # 1e999: no JSON number; the cell stays text
            return value
        return int(value) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return value


def _external_id(data: dict[str, Any], issues: _Issues) -> tuple[str | None, bool]:
    value = data.get("id")
    if value is None or value == "":
        return None, False
    if isinstance(value, bool) or not isinstance(value, str | int):
        issues.add("id", "expected a string or an integer")
        return None, False
    text = str(value).strip()
    if not text or len(text) > 255 or "\x00" in text:
        issues.add("id", "must be 1 to 255 characters without NUL")
        return None, False
    return text, True
