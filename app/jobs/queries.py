"""Every SELECT/INSERT/UPDATE of the job queue (the state machine lives in queue.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from app.models import Job, JobEvent
from app.models.enums import ACTIVE_JOB_STATUSES, JobStatus


def get(db: Session, job_id: int) -> Job | None:
    return db.get(Job, job_id)


def get_for_update(db: Session, job_id: int) -> Job | None:
    """The job row, locked for the rest of the transaction (SQLite already serialises writers)."""
    return db.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()


def active_job(db: Session, project_id: int | None, kind: str) -> Job | None:
    """The queued or running job of (project, kind), if any (the partial unique index allows one)."""
    where = Job.project_id.is_(None) if project_id is None else Job.project_id == project_id
    return db.scalars(select(Job).where(where, Job.kind == kind, Job.status.in_(ACTIVE_JOB_STATUSES))).first()


def active_jobs_of(db: Session, project_id: int) -> list[Job]:
    return list(db.scalars(select(Job).where(Job.project_id == project_id, Job.status.in_(ACTIVE_JOB_STATUSES))))


def add(db: Session, row: Job | JobEvent) -> None:
    db.add(row)
    db.flush()


def next_ready_ids(db: Session, now: datetime, kinds: Sequence[str] | None, limit: int = 5) -> list[int]:
    """Ids of queued jobs that are due, oldest first (SQLite claim path: try each with a guarded UPDATE)."""
    stmt = select(Job.id).where(Job.status == JobStatus.QUEUED, Job.scheduled_at <= now)
    if kinds:
        stmt = stmt.where(Job.kind.in_(kinds))
    return list(db.scalars(stmt.order_by(Job.scheduled_at, Job.id).limit(limit)))


def lock_next_ready(db: Session, now: datetime, kinds: Sequence[str] | None) -> Job | None:
    """Postgres claim path: the oldest due job, row-locked, skipping rows other workers hold."""
    stmt = select(Job).where(Job.status == JobStatus.QUEUED, Job.scheduled_at <= now)
    if kinds:
        stmt = stmt.where(Job.kind.in_(kinds))
    stmt = stmt.order_by(Job.scheduled_at, Job.id).limit(1).with_for_update(skip_locked=True)
    return db.scalars(stmt).first()


def guarded_update(db: Session, job_id: int, expect: dict[str, Any], values: dict[str, Any]) -> bool:
    """UPDATE jobs SET values WHERE id = job_id AND every `expect` column matches; True when a row changed."""
    stmt = update(Job).where(Job.id == job_id)
    for column, value in expect.items():
        stmt = stmt.where(getattr(Job, column) == value)
    result = db.execute(stmt.values(**values).execution_options(synchronize_session=False))
    assert isinstance(result, CursorResult)
    changed = result.rowcount == 1
    if changed:
        # Keep an already-loaded Job object in step with the row we just changed.
        loaded = db.identity_map.get(db.identity_key(Job, job_id))
        if loaded is not None:
            db.refresh(loaded)
    return changed


def stale_running(db: Session, older_than: datetime) -> list[Job]:
    """Running jobs whose last heartbeat (or start) is older than `older_than`, locked where possible."""
    stmt = select(Job).where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < older_than).order_by(Job.id)
    return list(db.scalars(stmt.with_for_update(skip_locked=True)))


def list_jobs(
    db: Session, *, project_id: int | None = None, statuses: Sequence[str] | None = None, limit: int = 50
) -> list[Job]:
    stmt = select(Job)
    if project_id is not None:
        stmt = stmt.where(Job.project_id == project_id)
    if statuses:
        stmt = stmt.where(Job.status.in_(statuses))
    return list(db.scalars(stmt.order_by(Job.id.desc()).limit(limit)))


def events_of(db: Session, job_id: int) -> list[JobEvent]:
    return list(db.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def children_of(db: Session, job_id: int) -> list[Job]:
    return list(db.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.id)))
