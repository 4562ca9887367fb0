"""Long (tidy) files: one row per completion, grouped into one record per prompt.

Rows are grouped by `--key-columns` (default: the prompt column). The model column names each
completion's model. Every other named column is kept as metadata: on the prompt when its value is the
same on all rows of every prompt (e.g. a reference summary), otherwise on each completion (e.g. a
toxicity score). Key columns other than the prompt column go to the prompt's metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from app.imports.schemas import ImportIssue, ImportOptions, RawRecord


def group_long_rows(
    rows: Iterable[RawRecord | ImportIssue], options: ImportOptions
) -> Iterator[RawRecord | ImportIssue]:
    """Group long-format rows into records of the shape `{"prompt", "completions", "metadata", "id"?}`.

    The whole file is grouped before anything is yielded: a prompt's rows need not be adjacent.
    """
    prompt_col = options.prompt_column or "prompt"
    completion_col = options.completion_column or "completion"
    model_col = options.model_column
    id_col = options.id_column
    key_cols = options.key_columns or [prompt_col]
    structural = {prompt_col, completion_col, *key_cols}
    if model_col:
        structural.add(model_col)
    if id_col:
        structural.add(id_col)

    groups: dict[tuple[str, ...], list[RawRecord]] = {}
    header_checked = False
    for item in rows:
        if isinstance(item, ImportIssue):
            yield item
            continue
        if not header_checked:
            header_checked = True
            missing = [c for c in sorted(structural) if c not in item.data]
            if missing:
                yield ImportIssue(
                    1, "header", f"column(s) {', '.join(missing)} not found (columns: {', '.join(item.data)})"
                )
                return
        bad = False
        for column in (prompt_col, completion_col, *key_cols):
            value = item.data.get(column)
            if not isinstance(value, str) or not value.strip():
                yield ImportIssue(item.line, column, "empty or missing value")
                bad = True
        if bad:
            continue
        key = tuple(str(item.data[c]) for c in key_cols)
        groups.setdefault(key, []).append(item)

    extra = _extra_columns(groups, structural)
    prompt_level = {c for c in extra if all(_constant(rows_, c) for rows_ in groups.values())}
    for key, members in groups.items():
        first = members[0]
        meta: dict[str, Any] = {c: first.data[c] for c in key_cols if c != prompt_col}
        meta.update({c: first.data.get(c) for c in extra if c in prompt_level})
        completions = []
        for row in members:
            completion: dict[str, Any] = {"text": row.data[completion_col]}
            if model_col and row.data.get(model_col):
                completion["model"] = row.data[model_col]
            row_meta = {c: row.data.get(c) for c in extra if c not in prompt_level}
            if row_meta:
                completion["metadata"] = row_meta
            completions.append(completion)
        record: dict[str, Any] = {
            "prompt": first.data[prompt_col],
            "completions": completions,
            "metadata": meta,
        }
        if options.key_columns:
            # Explicit keys identify the prompt (the same text may appear under several prompt types).
            record["_key"] = list(key)
        if id_col and first.data.get(id_col):
            record["id"] = first.data[id_col]
        yield RawRecord(first.line, record, tabular=first.tabular)


def _extra_columns(groups: dict[tuple[str, ...], list[RawRecord]], structural: set[str]) -> list[str]:
    for members in groups.values():
        return [c for c in members[0].data if c not in structural]
    return []


def _constant(rows: list[RawRecord], column: str) -> bool:
    first = rows[0].data.get(column)
    return all(row.data.get(column) == first for row in rows)
