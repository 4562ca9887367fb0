"""Slot rows: which prompts still lack slots, adding slots idempotently, and setting their priority."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import Completion, Prompt, Slot


def eligible_prompts(
    db: Session,
    project_id: int,
    round_: int,
    min_candidates: int,
    slots_per_prompt: int,
    prompt_ids: Sequence[int] | None = None,
) -> list[tuple[int, float, int]]:
    """(prompt id, prompt priority, existing slot count) of the project's non-gold prompts with at least
    `min_candidates` completions in round `round_` and fewer than `slots_per_prompt` slots of it; with
    `prompt_ids`, only those (one IN list: the caller keeps it under the driver's bind-parameter limit)."""
    n_completions = (
        select(Completion.prompt_id, func.count().label("n"))
        .where(Completion.round == round_)
        .group_by(Completion.prompt_id)
        .subquery()
    )
    n_slots = (
        select(Slot.prompt_id, func.count().label("n"))
        .where(Slot.round == round_)
        .group_by(Slot.prompt_id)
        .subquery()
    )
    stmt = (
        select(Prompt.id, Prompt.priority, func.coalesce(n_slots.c.n, 0))
        .join(n_completions, n_completions.c.prompt_id == Prompt.id)
        .outerjoin(n_slots, n_slots.c.prompt_id == Prompt.id)
        .where(Prompt.project_id == project_id, Prompt.is_gold.is_(False))
        .where(n_completions.c.n >= min_candidates)
        .where(func.coalesce(n_slots.c.n, 0) < slots_per_prompt)
    )
    if prompt_ids is not None:
        stmt = stmt.where(Prompt.id.in_(list(prompt_ids)))
    return [(int(pid), float(priority or 0.0), int(n)) for pid, priority, n in db.execute(stmt)]


def insert_slots(db: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert slot rows in one statement, skipping those whose (prompt, round, index) exists; returns how
    many were created."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(Slot)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["prompt_id", "round", "slot_index"])
        .returning(Slot.id)  # rowcount is not reliable for multi-row inserts on every driver
    )
    return len(db.execute(stmt).all())


def set_open_priority(db: Session, project_id: int, prompt_id: int, priority: float) -> int:
    """Set `slots.priority` of the prompt's not-yet-done slots; returns the number of rows changed."""
    result = db.execute(
        update(Slot)
        .where(Slot.project_id == project_id, Slot.prompt_id == prompt_id, Slot.status != "done")
        .values(priority=priority)
    )
    return int(getattr(result, "rowcount", 0) or 0)
