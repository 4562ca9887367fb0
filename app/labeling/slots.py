"""Slots: one row per required ranking of a prompt. Claiming a slot row is the lock that bounds collection.

`ensure_slots` is called by the import service after prompts arrive, by `projects.service.update`
when `annotations_per_prompt` is raised, and by the loop's sampling for each new round of a prompt (a slot
ranks the completions of its `round`). It only ever adds rows (lowering N leaves existing slots).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.labeling import queries
from app.models import Project, utcnow

_BATCH = 1000
_ID_CHUNK = 10_000  # prompt ids per IN list, well under every driver's bind-parameter limit


def min_candidates(project: Project) -> int:
    """The fewest completions a prompt needs to be rankable in this project."""
    return 2 if project.allow_fewer_than_k_min else max(2, project.k_min)


def _eligible(
    db: Session, project: Project, prompt_ids: Sequence[int] | None, round_: int
) -> list[tuple[int, float, int]]:
    """(prompt id, prompt priority, existing slot count) for prompts with enough candidates in round
    `round_`; gold excluded."""
    need, per_prompt = min_candidates(project), project.annotations_per_prompt
    if prompt_ids is None:
        return queries.eligible_prompts(db, project.id, round_, need, per_prompt)
    # One IN list per chunk: a single list of every imported id overflows the driver's bind-parameter
    # limit (65535 on Postgres, 32766 on SQLite) on large imports, which failed them at the very end.
    ids = list(prompt_ids)
    eligible: list[tuple[int, float, int]] = []
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        eligible.extend(queries.eligible_prompts(db, project.id, round_, need, per_prompt, chunk))
    return eligible


def ensure_slots(
    db: Session, project: Project, prompt_ids: Sequence[int] | None = None, *, round_: int = 0
) -> int:
    """Create the missing slots of round `round_` (annotations_per_prompt per prompt with enough candidates
    of that round); returns how many were created.

    Idempotent and safe under concurrency: rows are keyed by (prompt_id, round, slot_index) and inserted with
    ON CONFLICT DO NOTHING, so two callers racing on the same prompts create each slot exactly once.
    Gold prompts get no slots: they are injected by the selection hook and never count towards N.
    """
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for prompt_id, priority, _existing in _eligible(db, project, prompt_ids, round_):
        # Offer every index from 0: existing ones conflict and are skipped, so a gap is repaired too.
        for index in range(project.annotations_per_prompt):
            rows.append(
                {
                    "project_id": project.id,
                    "prompt_id": prompt_id,
                    "round": round_,
                    "slot_index": index,
                    "status": "open",
                    "priority": priority,
                    "created_at": now,
                }
            )
    created = 0
    for start in range(0, len(rows), _BATCH):
        created += queries.insert_slots(db, rows[start : start + _BATCH])
    return created
