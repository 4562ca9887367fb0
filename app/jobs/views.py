"""What the job pages show of a job's JSON: its result as rows of words (flat objects and lists as
"key: value" lists, deeper values as compact JSON, characters as written, never `\\u2192` escapes) and the
raw JSON for a collapsed box."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import urlencode

LIST_SHOWN = 20
"""Items of a long list shown before "… and N more" (the raw JSON has them all)."""


def readable(value: Any) -> str:
    """One value for people: floats rounded, lists and objects as compact JSON with unescaped unicode."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, dict) and all(_flat(v) for v in value.values()):
        return ", ".join(f"{k}: {readable(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list) and all(_flat(v) for v in value):
        more = f" … and {len(value) - LIST_SHOWN} more" if len(value) > LIST_SHOWN else ""
        return (", ".join(readable(v) for v in value[:LIST_SHOWN]) + more) or "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    return str(value)


def _flat(value: Any) -> bool:
    return not isinstance(value, dict | list)


def result_rows(result: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The result's fields as (label, value) rows, in the order the worker wrote them."""
    return [(str(key).replace("_", " "), readable(value)) for key, value in (result or {}).items()]


def pretty_json(value: Any) -> str:
    return json.dumps(value or {}, indent=2, ensure_ascii=False, default=str)


def live_url(path: str, status: str | None) -> str:
    """Where a job table polls itself from, keeping the page's status filter."""
    return f"{path}?{urlencode({'status': status})}" if status else path
