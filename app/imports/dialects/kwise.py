"""prefloop's own K-wise exports read back: `rankings` (one row per ranking) and `rm` (the seed RM format).

- `rankings`: `{"prompt", "completions": [...], "ranks": [rank or null, ...], "rationale", ...}`; the source
  project's ids (ranking, prompt, completions, annotator, model versions) and the ranking's flags, Likert
  answers and timings stay with the imported ranking's origin; `model_version_names` name the completions'
  models. A `not_rankable` row imports its prompt and answers without a ranking.
- `rm`: `{"prompt", "completion": [...], "ranking": [rank, ...]}` (smaller is better).
Rows of one prompt (several annotators) merge into one prompt with several rankings.
"""

from __future__ import annotations

from typing import Any

from app.imports.dialects.common import Translation, keep, record
from app.imports.schemas import RawRecord

# Columns of the `rankings` export that describe the source project; kept with the ranking, not mapped.
_SOURCE_COLUMNS = ("ranking_id", "prompt_id", "completion_ids", "model_version_ids", "shown_order", "annotator_id",
                   "flags", "likert", "wall_seconds", "active_seconds", "weight", "source", "labeler", "created_at")
_MAPPED = {"prompt", "completions", "ranks", "rationale", "not_rankable", "model_version_names", "id", "metadata"}


def translate(raw: RawRecord) -> Translation | None:
    data = raw.data
    if isinstance(data.get("completions"), list) and isinstance(data.get("ranks"), list):
        return _rankings_row(raw)
    if isinstance(data.get("completion"), list) and isinstance(data.get("ranking"), list):
        return _rm_row(raw)
    return None


def _rankings_row(raw: RawRecord) -> Translation:
    data = raw.data
    t = Translation("prefloop-rankings", raw)
    names = data.get("model_version_names")
    completions: list[Any] = list(data["completions"])
    if isinstance(names, list) and len(names) == len(completions):
        completions = [{"text": text, "model": name} if isinstance(name, str) else text
                       for text, name in zip(completions, names, strict=True)]
    out: dict[str, Any] = {"prompt": data.get("prompt"), "completions": completions, "rankings": []}
    if data.get("not_rankable"):
        t.skipped.append("rankings marked not rankable import their answers without a ranking")
    elif any(rank is not None for rank in data["ranks"]):
        origin = {"tool": "prefloop", **{k: data[k] for k in _SOURCE_COLUMNS if data.get(k) not in (None, "")}}
        out["rankings"] = [{"ranks": data["ranks"], "rationale": data.get("rationale") or "", "origin": origin}]
    for key in ("id", "metadata"):
        if data.get(key) not in (None, ""):
            out[key] = data[key]
    kept: dict[str, Any] = {}
    keep(kept, t, "", data, _MAPPED | set(_SOURCE_COLUMNS))
    t.record = record(raw.line, out, kept)
    return t


def _rm_row(raw: RawRecord) -> Translation:
    data = raw.data
    t = Translation("rm", raw)
    origin = {"tool": "prefloop-rm", **({"prompt_id": data["prompt_id"]} if "prompt_id" in data else {})}
    out: dict[str, Any] = {"prompt": data.get("prompt"), "completions": data["completion"],
                           "rankings": [{"ranks": data["ranking"], "origin": origin}]}
    kept: dict[str, Any] = {}
    keep(kept, t, "", data, {"prompt", "completion", "ranking", "prompt_id"})
    t.record = record(raw.line, out, kept)
    return t
