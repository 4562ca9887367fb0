"""The counts and rows behind the progress numbers: an annotator's counters and the admin progress page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from app.models import Comparison, Ranking, Slot, User


def annotator_ranking_counts(db: Session, project_id: int, annotator_id: int, midnight: datetime) -> tuple[int, int]:
    """(rankings by the annotator in the project since `midnight`, in total)."""
    today, mine = db.execute(
        select(
            func.coalesce(func.sum(case((Ranking.created_at >= midnight, 1), else_=0)), 0),
            func.count(),
        ).where(Ranking.project_id == project_id, Ranking.annotator_id == annotator_id)
    ).one()
    return int(today), int(mine)


def slot_counts(db: Session, project_id: int) -> tuple[int, int]:
    """(done slots, all slots) of the project."""
    done, target = db.execute(
        select(func.coalesce(func.sum(case((Slot.status == "done", 1), else_=0)), 0), func.count()).where(
            Slot.project_id == project_id
        )
    ).one()
    return int(done), int(target)


def prompt_states(db: Session, project_id: int, now: datetime) -> tuple[int, int, int]:
    """(prompts needing rankings, prompts with a live lease, prompts with every slot done)."""
    live = and_(Slot.status == "leased", Slot.lease_expires_at >= now)
    per_prompt = (
        select(
            Slot.prompt_id,
            func.sum(case((Slot.status == "done", 1), else_=0)).label("done"),
            func.sum(case((live, 1), else_=0)).label("live"),
            func.count().label("n"),
        )
        .where(Slot.project_id == project_id)
        .group_by(Slot.prompt_id)
        .subquery()
    )
    done, in_progress, needing = db.execute(
        select(
            func.coalesce(func.sum(case((per_prompt.c.done == per_prompt.c.n, 1), else_=0)), 0),
            func.coalesce(func.sum(case((per_prompt.c.live > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((per_prompt.c.done < per_prompt.c.n, 1), else_=0)), 0),
        )
    ).one()
    return int(needing), int(in_progress), int(done)


def human_ranking_times(db: Session, project_id: int) -> list[tuple[int | None, float | None]]:
    """(annotator id, wall seconds) of every human ranking of the project."""
    rows = db.execute(
        select(Ranking.annotator_id, Ranking.wall_seconds).where(
            Ranking.project_id == project_id, Ranking.source == "human"
        )
    )
    return [(annotator_id, wall) for annotator_id, wall in rows]


def display_names(db: Session, user_ids: Sequence[int]) -> dict[int, str]:
    """User id -> display name, for the given ids."""
    return dict(db.execute(select(User.id, User.display_name).where(User.id.in_(list(user_ids)))).tuples().all())


def latest_rankings(db: Session, project_id: int, limit: int) -> list[Ranking]:
    """The project's `limit` newest rankings, newest first."""
    return list(
        db.scalars(select(Ranking).where(Ranking.project_id == project_id).order_by(Ranking.id.desc()).limit(limit))
    )


def comparisons_of(db: Session, ranking_ids: Sequence[int]) -> list[Comparison]:
    """The comparisons of the given rankings, in id order."""
    return list(
        db.scalars(select(Comparison).where(Comparison.ranking_id.in_(list(ranking_ids))).order_by(Comparison.id))
    )


def ranking_times_since(db: Session, project_id: int, since: datetime) -> list[datetime]:
    """When each of the project's rankings created at or after `since` was created."""
    return list(
        db.scalars(select(Ranking.created_at).where(Ranking.project_id == project_id, Ranking.created_at >= since))
    )
