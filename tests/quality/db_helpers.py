"""Helpers for quality tests against the database: projects with rankable prompts, and annotators who rank
through the real labeling service (claim, then submit) with a chosen preference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.labeling import service as labeling
from app.labeling.schemas import RankingIn
from app.labeling.slots import ensure_slots
from app.models import Project, User
from app.quality.picker import install
from tests.factories import make_project, make_prompt

Preference = Callable[[list[int]], list[int]]
"""Shown completion ids (display order) -> the same ids best first."""


def by_id(shown: list[int]) -> list[int]:
    """Lower completion id is better (every such annotator agrees)."""
    return sorted(shown)


def by_id_reversed(shown: list[int]) -> list[int]:
    return sorted(shown, reverse=True)


def first_shown(shown: list[int]) -> list[int]:
    """Always ranks in display order: maximal position bias."""
    return list(shown)


def seeded_project(db: Session, prompts: int = 3, k: int = 4, n: int = 1, quality: dict[str, Any] | None = None,
                   **fields: Any) -> Project:
    """A project with `prompts` prompts of `k` completions (models m0..m{k-1}) and N slots each, committed."""
    install()
    fields.setdefault("k_min", 2)
    fields.setdefault("k_max", 9)
    project = make_project(db, annotations_per_prompt=n, settings={"quality": quality or {}}, **fields)
    for _ in range(prompts):
        make_prompt(db, project, n_completions=k)
    ensure_slots(db, project)
    db.commit()
    return project


def rank_next(db: Session, project: Project, user: User, prefer: Preference, seconds: float | None = 30.0
              ) -> dict[str, Any] | None:
    """Claim the user's next task and submit a strict ranking by `prefer`; None when nothing is left."""
    task = labeling.next_task(db, project, user)
    if task is None:
        db.commit()
        return None
    shown = list(task.assignment.shown_completion_ids)
    order = prefer(shown)
    out = labeling.submit(db, user, task.assignment.id,
                          RankingIn(ranks={c: i + 1 for i, c in enumerate(order)}, active_seconds=seconds))
    db.commit()
    return {**out, "is_gold": task.assignment.is_gold, "shown": shown}


def rank_all(db: Session, project: Project, users: Sequence[User], prefer: Preference | Sequence[Preference],
             limit: int = 1000) -> int:
    """Every user ranks until nothing is left for them; returns how many rankings were stored."""
    prefs = list(prefer) if isinstance(prefer, Sequence) else [prefer] * len(users)
    done = 0
    for user, p in zip(users, prefs, strict=True):
        for _ in range(limit):
            if rank_next(db, project, user, p) is None:
                break
            done += 1
    return done
