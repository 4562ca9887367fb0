"""What a parsed JSON value may contain before it reaches validation: bounded nesting, storable strings.

Python's `json` accepts things no database stores (NaN, Infinity, lone UTF-16 surrogates such as `\\ud800`)
and nesting deep enough to overflow the stack of whatever serialises the value next. Each is reported as a
problem of its line, with the path of the offending value, instead of failing the whole request.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity); write null or a string")


def loads(text: str) -> Any:
    """`json.loads` without NaN/Infinity; ValueError (or RecursionError) says what is wrong."""
    return json.loads(text, parse_constant=_refuse_constant)


def decoder() -> json.JSONDecoder:
    """A decoder for `raw_decode` with the same rule."""
    return json.JSONDecoder(parse_constant=_refuse_constant)


def value_error_reason(exc: ValueError) -> str:
    """A line's problem from a non-syntax ValueError of the decoder (NaN, or an integer over 4,300 digits)."""
    message = str(exc)
    if "integer string conversion" in message:
        return "a number with more than 4,300 digits; write it as a string"
    return message


def unstorable(value: Any) -> tuple[str, str] | None:
    """(path, reason) of the first value that cannot be stored: too deep, or a string with a lone surrogate."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return path or "record", f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            reason = _surrogate(item)
            if reason:
                return path or "record", reason
        elif isinstance(item, dict):
            for key, child in item.items():
                reason = _surrogate(key) if isinstance(key, str) else None
                if reason:
                    return f"{path}.{key!r}" if path else repr(key), f"the key {reason[0].lower()}{reason[1:]}"
                stack.append((child, f"{path}.{key}" if path else str(key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def _surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"contains an unpaired surrogate (\\u{ord(text[exc.start]):04x}) at character {exc.start + 1}, "
                "which is not text any database can store")
    return None
