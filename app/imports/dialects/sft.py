"""Prompt-completion records: TRL's SFT format and prefloop's own `sft` export read back as demonstrations.

- `{"prompt": "…", "completion": "…"}`, or conversational (TRL): `prompt` a message list and `completion` a
  list of assistant messages (their contents joined by blank lines);
- the `sft` export (`prompt_id`, `prompt`, `completion`, `ranking_id`, `annotator_id`, `created_at`,
  `demonstration_id`, `source`, `labeler`), JSONL, JSON or CSV (whose cells hold conversational values as JSON
  text). The source project's ids, times and provenance are not imported.
The completion becomes a demonstration of the prompt (canonical key `demonstrations`), never a candidate to
rank. Rows of one prompt (several annotators) merge into one prompt with several demonstrations.
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.imports.dialects.common import Translation, keep, record
from app.imports.schemas import RawRecord

DIALECT = "sft"
_SOURCE_COLUMNS = ("prompt_id", "ranking_id", "annotator_id", "created_at", "demonstration_id", "source", "labeler")
_CANONICAL = {"id", "prompt", "messages", "system", "metadata", "completions", "rankings"}


def translate(raw: RawRecord) -> Translation | None:
    data = raw.data
    if "completion" not in data or any(k in data for k in ("chosen", "rejected", "ranking", "demonstrations")):
        return None
    if raw.tabular:
        # A CSV's `completion` column is a candidate (wide layout); only the `sft` export's header means otherwise.
        if "ranking_id" not in data or "prompt" not in data or any(re.fullmatch(r"completion_?\d+", k) for k in data):
            return None
        data = {k: _json_cell(v) if k in ("prompt", "completion") else v for k, v in data.items()}
    value = data["completion"]
    if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(m, dict) for m in value))):
        return None  # a list of texts is the `rm` export's (or nothing we know)
    t = Translation(DIALECT, raw)
    text = _answer(value)
    if text is None:
        return t.fail("completion", "expected text or a list of assistant messages {role: assistant, content}")
    out: dict[str, Any] = {k: data[k] for k in _CANONICAL if data.get(k) not in (None, "")}
    out["demonstrations"] = [text] if text.strip() else []
    if not text.strip():
        t.skipped.append("empty completion: the prompt was read without a demonstration")
    if any(data.get(k) not in (None, "") for k in _SOURCE_COLUMNS):
        t.skipped.append("the source project's prompt, ranking and annotator ids and times are not imported")
    kept: dict[str, Any] = {}
    keep(kept, t, "", data, _CANONICAL | {"completion"} | set(_SOURCE_COLUMNS))
    t.record = record(raw.line, out, kept)
    return t


def _answer(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    contents = [m.get("content") for m in value if m.get("role") == "assistant"]
    if not value or len(contents) != len(value) or not all(isinstance(c, str) for c in contents):
        return None
    return "\n\n".join(str(c) for c in contents)


def _json_cell(value: Any) -> Any:
    """A CSV cell holding a message list as JSON text (how exports write conversational values)."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, list) and all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return value
