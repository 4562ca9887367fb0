"""Argilla 2.x record exports (https://docs.argilla.io/latest/reference/argilla/records/records/).

Nested (`records.to_list(flatten=False)`, `to_json`): `{"id", "fields": {...}, "metadata": {...},
"responses": {"<question>": [{"value", "user_id", "status"}, ...]}, "suggestions": {...}}`. Flattened
(`to_list(flatten=True)`, `to_datasets()`, Hub exports): fields at the top level beside `<question>.responses`,
`<question>.responses.users` and `<question>.responses.status`.

A ranking question's value is the option values best first (`["response_2", "response_1"]`) or
`[{"value": "response_1", "rank": 1}, ...]` (ties share a rank); its options name the fields that hold the
answers. Each user's submitted response is one ranking (drafts and discarded responses are not imported,
and counted in the notes). A text question named like rationale/comment/reason becomes that ranking's
rationale; other questions' answers stay with the ranking's origin. The prompt is the field named like a
prompt, or the only other text field; the remaining fields are kept in metadata.
"""

from __future__ import annotations

import re
from typing import Any

from app.imports.dialects.common import Translation, keep, pick_prompt, record
from app.imports.schemas import RawRecord

DIALECT = "argilla"
_RECORD_KEYS = {"id", "external_id", "_server_id", "status", "inserted_at", "updated_at", "vectors"}
_ANSWER_NAME = re.compile(r"(response|answer|completion|generation|output|reply|candidate)s?[-_ ]?\d*", re.I)
_RATIONALE_NAME = re.compile(r"rationale|comment|reason|explanation|feedback|justification", re.I)


def translate(raw: RawRecord) -> Translation | None:
    data = raw.data
    if isinstance(data.get("fields"), dict) and ("responses" in data or "suggestions" in data):
        fields, responses = data["fields"], _nested_responses(data.get("responses"))
    elif any(isinstance(k, str) and k.endswith(".responses") for k in data):
        fields, responses = _flattened(data)
    else:
        return None
    t = Translation(DIALECT, raw)
    if responses is None:
        return t.fail("responses", "expected {question: [{value, user_id, status}]} or a list of responses")
    ranking_questions = [q for q, rs in responses.items() if any(isinstance(r.get("value"), list) for r in rs)]
    answers = _answer_fields(fields, responses, ranking_questions)
    if not answers:
        return t.fail("fields", "no answers found: a ranking question's options name the answer fields, and no "
                                f"field is named like an answer (fields: {', '.join(sorted(fields)) or 'none'})")
    prompt_key = pick_prompt(fields, set(answers))
    if prompt_key is None:
        return t.fail("fields", f"cannot tell which field is the prompt among "
                                f"{', '.join(sorted(set(fields) - set(answers)))}; name it `prompt`")
    rankings = []
    for question in ranking_questions:
        for i, response in enumerate(responses[question]):
            if response.get("status") not in (None, "submitted"):
                t.skipped.append(f"{response.get('status')} responses are not imported")
                continue
            ranks = _ranks(response.get("value"), answers, t, f"responses.{question}[{i}].value")
            if t.issues:
                return t
            user = response.get("user_id")
            origin: dict[str, Any] = {"tool": DIALECT, "question": question, "user_id": user}
            origin.update(_other_answers(responses, ranking_questions, user))
            rankings.append({"ranks": ranks, "rationale": _rationale(responses, user), "origin": origin})
    if data.get("suggestions") or any(isinstance(k, str) and ".suggestion" in k for k in data):
        t.skipped.append("suggestions are model output, not human rankings, and are not imported")
    kept: dict[str, Any] = {}
    keep(kept, t, "fields.", fields, set(answers) | {prompt_key})
    out: dict[str, Any] = {"prompt": fields[prompt_key], "completions": [fields[a] for a in answers],
                           "rankings": rankings}
    if isinstance(data.get("metadata"), dict):
        out["metadata"] = dict(data["metadata"])
    record_id = data.get("id") if data.get("id") not in (None, "") else data.get("external_id")
    if record_id not in (None, ""):
        out["id"] = record_id
    t.record = record(raw.line, out, kept)
    return t


def _nested_responses(value: Any) -> dict[str, list[dict[str, Any]]] | None:
    if value is None:
        return {}
    if isinstance(value, dict):
        out: dict[str, list[dict[str, Any]]] = {}
        for question, items in value.items():
            items = items if isinstance(items, list) else [items]
            out[question] = [r if isinstance(r, dict) else {"value": r} for r in items]
        return out
    if isinstance(value, list):  # rg.Response objects serialised one by one
        grouped: dict[str, list[dict[str, Any]]] = {}
        for r in value:
            if not isinstance(r, dict) or not isinstance(r.get("question_name"), str):
                return None
            grouped.setdefault(r["question_name"], []).append(r)
        return grouped
    return None


def _flattened(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    fields = {k: v for k, v in data.items() if "." not in k and k not in _RECORD_KEYS and k != "metadata"}
    responses: dict[str, list[dict[str, Any]]] = {}
    for key, values in data.items():
        if not key.endswith(".responses") or not isinstance(values, list):
            continue
        question = key.removesuffix(".responses")
        users = data.get(f"{key}.users") or []
        statuses = data.get(f"{key}.status") or []
        responses[question] = [
            {"value": v, "user_id": users[i] if i < len(users) else None,
             "status": statuses[i] if i < len(statuses) else None}
            for i, v in enumerate(values)
        ]
    return fields, responses


def _answer_fields(fields: dict[str, Any], responses: dict[str, list[dict[str, Any]]],
                   ranking_questions: list[str]) -> list[str]:
    named: set[str] = set()
    for question in ranking_questions:
        for response in responses[question]:
            for item in response.get("value") or []:
                option = item.get("value") if isinstance(item, dict) else item
                if isinstance(option, str):
                    named.add(option)
    if not named:
        named = {k for k in fields if _ANSWER_NAME.fullmatch(k) and isinstance(fields[k], str)}
    return [k for k in fields if k in named]  # an option naming no field fails in _ranks


def _ranks(value: Any, answers: list[str], t: Translation, where: str) -> list[int | None]:
    ranks: list[int | None] = [None] * len(answers)
    if not isinstance(value, list):
        t.fail(where, "expected the ranked options")
        return ranks
    for position, item in enumerate(value, start=1):
        option, rank = (item.get("value"), item.get("rank")) if isinstance(item, dict) else (item, position)
        if option not in answers:
            t.fail(where, f"option {option!r} names no field of the record")
            return ranks
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
            t.fail(where, f"rank of {option!r} must be a whole number")
            return ranks
        ranks[answers.index(option)] = rank
    return ranks


def _rationale(responses: dict[str, list[dict[str, Any]]], user: Any) -> str:
    for question, items in responses.items():
        if _RATIONALE_NAME.search(question):
            for r in items:
                if r.get("user_id") == user and isinstance(r.get("value"), str):
                    return str(r["value"])
    return ""


def _other_answers(responses: dict[str, list[dict[str, Any]]], ranking_questions: list[str],
                   user: Any) -> dict[str, Any]:
    """The same user's answers to the record's other questions, kept with the ranking verbatim."""
    out = {}
    for question, items in responses.items():
        if question in ranking_questions or _RATIONALE_NAME.search(question):
            continue
        for r in items:
            if r.get("user_id") == user:
                out[f"answer.{question}"] = r.get("value")
    return out
