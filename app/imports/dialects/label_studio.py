"""Label Studio's JSON/JSONL export of tasks (https://labelstud.io/guide/task_format).

A task is `{"id", "data": {...}, "annotations": [{"result": [...], "completed_by", "was_cancelled"}, ...],
"predictions": [...]}`. Two RLHF templates are mapped:

- Ranker over a List (`data.<list>` = `[{"id", "body"|"text"|"title"}, ...]`): the result
  `{"type": "ranker", "value": {"ranker": {"<tag name>": [item ids, best first]}}}` is a ranking; items the
  annotator left out are unranked. Ranker buckets are groups, not an order, and are refused.
- Pairwise (`data.answer1`, `data.answer2`): the result `{"type": "pairwise", "value": {"selected": "left"}}`
  ranks the left answer (answer1) first.

The prompt is `data.prompt` (or another usual name, or the only text field left). A TextArea result becomes
the ranking's rationale. Cancelled annotations and model predictions are not imported (and counted in the
notes); every other data field is kept in the prompt's metadata.
"""

from __future__ import annotations

import re
from typing import Any

from app.imports.dialects.common import Translation, keep, pick_prompt, record, text_of
from app.imports.schemas import RawRecord

DIALECT = "label-studio"
_PAIRWISE = re.compile(r"answer_?([12])")


def translate(raw: RawRecord) -> Translation | None:
    task = raw.data
    data = task.get("data")
    if not isinstance(data, dict) or not ("annotations" in task or "predictions" in task):
        return None
    t = Translation(DIALECT, raw)
    answers = _answers(data)
    if answers is None:
        return t.fail("data", "no answers found: expected a List of {id, body} items (Ranker template) or "
                              f"answer1/answer2 (Pairwise template); data has {', '.join(sorted(data)) or 'no fields'}")
    used, ids, texts = answers
    prompt_key = pick_prompt(data, used)
    if prompt_key is None:
        return t.fail("data", f"cannot tell which field is the prompt among {', '.join(sorted(set(data) - used))}; "
                              "name it `prompt`")
    rankings = []
    for i, annotation in enumerate(task.get("annotations") or []):
        if not isinstance(annotation, dict):
            return t.fail(f"annotations[{i}]", "expected an object")
        if annotation.get("was_cancelled"):
            t.skipped.append("cancelled annotations are not imported")
            continue
        ranking = _ranking(annotation, ids, t, f"annotations[{i}]")
        if t.issues:
            return t
        if ranking is not None:
            rankings.append(ranking)
    if task.get("predictions"):
        t.skipped.append("model predictions are not human rankings and are not imported")
    kept: dict[str, Any] = {}
    keep(kept, t, "data.", data, used | {prompt_key})
    out: dict[str, Any] = {"prompt": data[prompt_key], "completions": texts, "rankings": rankings}
    if task.get("id") not in (None, ""):
        out["id"] = task["id"]
    t.record = record(raw.line, out, kept)
    return t


def _answers(data: dict[str, Any]) -> tuple[set[str], list[str], list[str | None]] | None:
    """(fields used, the answers' ids, their texts): a Ranker List, else the Pairwise template's two answers."""
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
            return {key}, [str(v["id"]) for v in value], [text_of(v) for v in value]
    pairwise = sorted((m.group(1), k) for k in data if (m := _PAIRWISE.fullmatch(k)))
    if [n for n, _ in pairwise] == ["1", "2"]:
        return {k for _, k in pairwise}, ["left", "right"], [text_of(data[k]) for _, k in pairwise]
    return None


def _ranking(annotation: dict[str, Any], ids: list[str], t: Translation, where: str) -> dict[str, Any] | None:
    ranks: list[int | None] | None = None
    rationale = ""
    for j, result in enumerate(annotation.get("result") or []):
        kind = result.get("type") if isinstance(result, dict) else None
        value = result.get("value") if isinstance(result, dict) else None
        if not isinstance(value, dict):
            t.fail(f"{where}.result[{j}]", "expected an object with `type` and `value`")
            return None
        if kind == "ranker":
            ranks = _ranker_ranks(value, ids, t, f"{where}.result[{j}].value.ranker")
        elif kind == "pairwise":
            selected = value.get("selected")
            if selected not in ("left", "right") or ids != ["left", "right"]:
                t.fail(f"{where}.result[{j}].value.selected", "expected `left` or `right` on a Pairwise task")
                return None
            ranks = [1, 2] if selected == "left" else [2, 1]
        elif kind == "textarea":
            texts = value.get("text")
            rationale = "\n".join(x for x in texts if isinstance(x, str)) if isinstance(texts, list) else ""
        else:
            t.skipped.append(f"`{kind}` results are not imported")
        if t.issues:
            return None
    if ranks is None:
        return None
    completed_by = annotation.get("completed_by")
    annotator = completed_by.get("email") or completed_by.get("id") if isinstance(completed_by, dict) else completed_by
    origin = {"tool": DIALECT, "annotation_id": annotation.get("id"), "annotator": annotator}
    return {"ranks": ranks, "rationale": rationale, "origin": {k: v for k, v in origin.items() if v is not None}}


def _ranker_ranks(value: dict[str, Any], ids: list[str], t: Translation, where: str) -> list[int | None] | None:
    ranker = value.get("ranker")
    if not isinstance(ranker, dict):
        t.fail(where, "expected {\"<ranker name>\": [item ids, best first]}")
        return None
    columns = {name: order for name, order in ranker.items() if name != "_"}  # "_": Label Studio's own list
    if len(columns) != 1:
        t.fail(where, f"{len(columns)} buckets: Ranker buckets are groups, not an order; export a plain Ranker")
        return None
    (order,) = columns.values()
    if not isinstance(order, list):
        t.fail(where, "expected a list of item ids")
        return None
    ranks: list[int | None] = [None] * len(ids)
    for position, item_id in enumerate(order, start=1):
        if str(item_id) not in ids:
            t.fail(where, f"item {item_id!r} is not in the task's list")
            return None
        ranks[ids.index(str(item_id))] = position
    return ranks
