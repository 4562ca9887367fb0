"""OpenAI's preference fine-tuning JSONL (DPO): one chosen/rejected pair per line.

`{"input": {"messages": [...], "tools": [...], ...}, "preferred_output": [{"role": "assistant", "content"}],
"non_preferred_output": [{"role": "assistant", "content"}]}` becomes the pair prompt = `input.messages`,
chosen = `preferred_output`, rejected = `non_preferred_output`. The other keys of `input` (tools, parallel
tool calls) and any other top-level key are kept in the prompt's metadata.
"""

from __future__ import annotations

from typing import Any

from app.imports.dialects.common import Translation, keep, record
from app.imports.schemas import RawRecord

DIALECT = "openai"
_KEYS = ("input", "preferred_output", "non_preferred_output")


def translate(raw: RawRecord) -> Translation | None:
    data = raw.data
    if not all(key in data for key in _KEYS):
        return None
    t = Translation(DIALECT, raw)
    given = data["input"]
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
        return t.fail("input.messages", "expected the prompt as a list of {role, content} messages")
    kept: dict[str, Any] = {}
    keep(kept, t, "input.", given, {"messages"})
    keep(kept, t, "", data, set(_KEYS) | {"id", "metadata"})
    out: dict[str, Any] = {"prompt": given["messages"], "chosen": data["preferred_output"],
                           "rejected": data["non_preferred_output"], "_origin": {"tool": DIALECT}}
    for key in ("id", "metadata"):
        if data.get(key) not in (None, ""):
            out[key] = data[key]
    t.record = record(raw.line, out, kept)
    return t
