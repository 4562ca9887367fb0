"""The SELECTs /metrics runs at scrape time (each one aggregate, bounded by the number of kinds or projects),
and the trivial one /readyz sends to see that the database answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from app.models import Job, ModelVersion, Ranking
from app.models.enums import JobStatus, VersionStatus


def ping(conn: Connection) -> None:
    """One round trip that touches no table: raises SQLAlchemyError when the database does not answer."""
    conn.execute(text("SELECT 1"))


def job_counts(db: Session) -> list[tuple[str, str, int]]:
    """(kind, status, number of jobs) for every pair that has jobs."""
    stmt = select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
    return [(kind, status, int(n)) for kind, status, n in db.execute(stmt)]


def oldest_running_heartbeat(db: Session) -> datetime | None:
    """The oldest heartbeat (or start) among running jobs; None when nothing runs."""
    return db.scalar(select(func.min(func.coalesce(Job.heartbeat_at, Job.started_at))).where(Job.status == JobStatus.RUNNING))


def ranking_count(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(Ranking)) or 0)


def active_annotators(db: Session, since: datetime) -> int:
    """Distinct annotators with a ranking created at or after `since`."""
    stmt = select(func.count(func.distinct(Ranking.annotator_id))).where(
        Ranking.created_at >= since, Ranking.annotator_id.is_not(None)
    )
    return int(db.scalar(stmt) or 0)


def latest_trained_versions(db: Session) -> list[tuple[int, str, dict[str, Any]]]:
    """(project id, kind, metrics) of each project's newest reward and policy version that finished training."""
    newest = (
        select(func.max(ModelVersion.id).label("id"))
        .where(ModelVersion.status != VersionStatus.TRAINING)
        .group_by(ModelVersion.project_id, ModelVersion.kind)
        .subquery()
    )
    stmt = select(ModelVersion.project_id, ModelVersion.kind, ModelVersion.metrics).join(
        newest, ModelVersion.id == newest.c.id
    )
    return [(int(project), kind, dict(metrics or {})) for project, kind, metrics in db.execute(stmt)]


def recent_durations(db: Session, limit: int) -> list[tuple[str, float]]:
    """(kind, seconds from start to finish) of the `limit` jobs that succeeded last."""
    stmt = (
        select(Job.kind, Job.started_at, Job.finished_at)
        .where(Job.status == JobStatus.SUCCEEDED, Job.started_at.is_not(None), Job.finished_at.is_not(None))
        .order_by(Job.finished_at.desc())
        .limit(limit)
    )
    return [(kind, (end - start).total_seconds()) for kind, start, end in db.execute(stmt) if start and end]
