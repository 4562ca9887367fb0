"""Helpers for labeling tests: a project with rankable prompts, and a full valid ranking for a task."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.labeling.schemas import RankingIn
from app.labeling.slots import ensure_slots
from app.models import Assignment, Project
from tests.factories import make_project, make_prompt


def seeded_project(db: Session, prompts: int = 3, k: int = 4, **fields: object) -> Project:
    """A project with `prompts` prompts of `k` completions each, slots created, committed."""
    fields.setdefault("k_min", 2)
    fields.setdefault("k_max", 9)
    project = make_project(db, **fields)
    for _ in range(prompts):
        make_prompt(db, project, n_completions=k)
    ensure_slots(db, project)
    db.commit()
    return project


def strict_ranking(assignment: Assignment, **extra: object) -> RankingIn:
    """Ranks 1..K in display order (no ties)."""
    ranks = {cid: i + 1 for i, cid in enumerate(assignment.shown_completion_ids)}
    return RankingIn(ranks=ranks, **extra)  # type: ignore[arg-type]
