"""The edge rule for untrusted text and JSON, applied once to every request (a dependency of the whole app).

The rule: a request whose text (path and query parameters, form fields, JSON strings and keys) holds a NUL
character or an unpaired UTF-16 surrogate is refused with 422 naming where; so is a JSON body nested deeper than
`MAX_JSON_DEPTH`, or holding a number that is not finite or an integer beyond 64 bits. Such input cannot be
stored (Postgres refuses NUL in text, no driver encodes a lone surrogate, BIGINT stops at 2**63 - 1), so
refusing it here, before any route runs, turns what used to be a 500 from deep inside a query into a 422 that
says what to fix. Nothing is stripped: silently changing what someone typed would be worse than refusing it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

from app.web.csrf import FORM_MAX_FIELDS, FORM_MAX_FILES, FORM_MAX_PART_SIZE
from app.web.paths import MAX_ID

MAX_JSON_DEPTH = 64
MAX_PROBLEMS = 20
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TEXT_MESSAGE = "must not contain NUL characters or unpaired surrogates"


def unstorable(text: str) -> bool:
    """True when `text` holds a character no database column can store (NUL, a lone surrogate)."""
    return _UNSTORABLE.search(text) is not None


def _problem(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _text_problems(where: str, pairs: list[tuple[str, object]]) -> list[dict[str, Any]]:
    found = []
    for name, value in pairs:
        if unstorable(name) or (isinstance(value, str) and unstorable(value)):
            found.append(_problem([where, _UNSTORABLE.sub("?", name)], TEXT_MESSAGE, "string_unstorable"))
    return found


def json_problems(data: object) -> list[dict[str, Any]]:
    """What in a parsed JSON body breaks the rule, each with its location (at most MAX_PROBLEMS)."""
    found: list[dict[str, Any]] = []
    stack: list[tuple[object, list[str | int]]] = [(data, ["body"])]
    while stack and len(found) < MAX_PROBLEMS:
        value, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH + 1:
            return [_problem(["body"], f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "json_too_deep")]
        if isinstance(value, str):
            if unstorable(value):
                found.append(_problem(loc, TEXT_MESSAGE, "string_unstorable"))
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if abs(value) > MAX_ID:
                found.append(_problem(loc, "integers must fit in 64 bits", "int_too_large"))
        elif isinstance(value, float):
            if not math.isfinite(value):
                found.append(_problem(loc, "numbers must be finite (no NaN, Infinity or 1e999)", "finite_number"))
        elif isinstance(value, dict):
            for key, item in value.items():
                if unstorable(key):
                    found.append(_problem([*loc, _UNSTORABLE.sub("?", key)], TEXT_MESSAGE, "string_unstorable"))
                stack.append((item, [*loc, key]))
        elif isinstance(value, list):
            stack.extend((item, [*loc, i]) for i, item in enumerate(value))
    return found


async def reject_unstorable_input(request: Request) -> None:
    """Refuse (422) a request that breaks the edge rule; see the module docstring.

    JSON bodies larger than the form limit are left alone: only upload routes accept that much, and they take
    multipart files, whose content the import validation checks line by line.
    """
    problems = _text_problems("path", [(k, v) for k, v in request.path_params.items()])
    problems += _text_problems("query", list(request.query_params.multi_items()))
    if request.method in _BODY_METHODS:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == "application/json" or content_type.endswith("+json"):
            body = await request.body()
            if body and len(body) <= request.app.state.settings.max_request_kb * 1024:
                try:
                    data = await request.json()  # parsed once: FastAPI's body parsing shares the cache
                except RecursionError:
                    problems.append(_problem(["body"], f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                                             "json_too_deep"))
                except ValueError:
                    pass  # malformed JSON: the route's own parsing says what is wrong with it
                else:
                    problems += json_problems(data)
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form(max_fields=FORM_MAX_FIELDS, max_files=FORM_MAX_FILES,
                                      max_part_size=FORM_MAX_PART_SIZE)
            problems += _text_problems("body", list(form.multi_items()))
    if problems:
        raise RequestValidationError(problems[:MAX_PROBLEMS])
