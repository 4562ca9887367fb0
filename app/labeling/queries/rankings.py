"""Rankings and their comparisons: reading, replacing, and the training watermarks that guard them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from app.models import (
    Assignment,
    Comparison,
    Job,
    ModelVersion,
    ModelVersionComparison,
    Ranking,
    RankingVersion,
)
from app.models.enums import ACTIVE_JOB_STATUSES


def ranking_for(db: Session, assignment_id: int) -> Ranking | None:
    return db.scalar(select(Ranking).where(Ranking.assignment_id == assignment_id))


def comparison_count(db: Session, ranking_id: int) -> int:
    return int(
        db.scalar(select(func.count()).select_from(Comparison).where(Comparison.ranking_id == ranking_id))
        or 0
    )


def add_comparisons(db: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        db.execute(insert(Comparison), rows)


def version_hashes(db: Session, ranking_id: int) -> set[str]:
    """The payload hashes of a ranking's superseded versions."""
    return set(db.scalars(select(RankingVersion.payload_hash).where(RankingVersion.ranking_id == ranking_id)))


def latest_ranking(db: Session, project_id: int, annotator_id: int) -> Ranking | None:
    """The annotator's most recently submitted ranking of a task in the project (the one they may change)."""
    return db.scalar(
        select(Ranking)
        .join(Assignment, Assignment.id == Ranking.assignment_id)
        .where(Ranking.project_id == project_id, Ranking.annotator_id == annotator_id)
        .order_by(Assignment.finished_at.desc().nulls_last(), Ranking.id.desc())
        .limit(1)
    )


def trained_comparison_ids(db: Session, ranking_id: int) -> tuple[int | None, bool]:
    """(the lowest id of the ranking's comparisons, whether any of them is in a model's lineage).

    Tied pairs count for the id too: SQLite hands a deleted row's id to the next insert, so regenerating
    comparisons below a watermark could put new training data under it.
    """
    mine = Comparison.ranking_id == ranking_id
    lowest = db.scalar(select(func.min(Comparison.id)).where(mine))
    in_lineage = db.scalar(
        select(ModelVersionComparison.comparison_id)
        .join(Comparison, Comparison.id == ModelVersionComparison.comparison_id)
        .where(mine)
        .limit(1)
    )
    return (int(lowest) if lowest is not None else None), in_lineage is not None


def highest_training_watermark(db: Session, project_id: int) -> int:
    """The highest comparison watermark any model version of the project (training or finished) or any
    unfinished job's payload has fixed: comparisons up to it are, or are about to be, training data."""
    versions = db.scalar(select(func.max(ModelVersion.data_watermark)).where(ModelVersion.project_id == project_id))
    marks = [int(versions or 0)]
    payloads = db.scalars(
        select(Job.payload).where(Job.project_id == project_id, Job.status.in_(ACTIVE_JOB_STATUSES))
    )
    for payload in payloads:
        mark = (payload or {}).get("watermark")
        if isinstance(mark, int):
            marks.append(mark)
    return max(marks)


def delete_comparisons(db: Session, ranking_id: int) -> None:
    db.execute(delete(Comparison).where(Comparison.ranking_id == ranking_id))


def hold_back_watermarks(db: Session) -> None:
    """Postgres: wait for, and until this transaction ends keep out, a training job fixing its comparison
    watermark (app.registry.service.settled_watermark takes SHARE, which ROW EXCLUSIVE conflicts with).
    SQLite runs one write transaction at a time, so there is nothing to do."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("LOCK TABLE comparisons IN ROW EXCLUSIVE MODE"))


def rankings_since(db: Session, project_id: int, annotator_id: int, since: datetime) -> tuple[int, datetime | None]:
    """(how many rankings the annotator submitted in the project since `since`, the oldest one's time)."""
    count, oldest = db.execute(
        select(func.count(), func.min(Ranking.created_at))
        .where(Ranking.project_id == project_id, Ranking.annotator_id == annotator_id, Ranking.created_at >= since)
    ).one()
    return int(count or 0), oldest
