"""The job state machine: enqueue, claim, heartbeat, finish, fail (with backoff), cancel, retry, requeue stale.

Every function takes the caller's Session and only flushes; the caller's unit of work commits. Every state
change writes a JobEvent. Claiming uses `FOR UPDATE SKIP LOCKED` on Postgres and a guarded conditional
UPDATE (`… WHERE id = ? AND status = 'queued'`) on SQLite, where `BEGIN IMMEDIATE` serialises writers.
Transitions a worker makes are guarded by `status = 'running' AND worker_id = me`, so a worker whose job
was requeued after a stale heartbeat can never finish or fail the job that another worker now runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.jobs import queries

# The reads that pages and the API need, offered here so routes never reach the query module.
from app.jobs.queries import children_of as children_of
from app.jobs.queries import events_of as events_of
from app.jobs.queries import list_jobs as list_jobs
from app.jobs.schemas import REQUEST_ID_KEY, validate_payload
from app.logs import current_request_id
from app.models import Job, JobEvent, utcnow
from app.models.enums import UNSUCCESSFUL_JOB_STATUSES, JobStatus

log = logging.getLogger("prefloop.jobs")

BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 600.0
_MESSAGE_LIMIT = 500


class JobError(Conflict, ValueError):
    """A job request that cannot be honoured (wrong state, conflicting active job); the message says why."""


class JobNotFound(NotFound, LookupError):
    """No job with that id (e.g. deleted between the page and the click)."""


@dataclass(frozen=True)
class HeartbeatStatus:
    """What a heartbeat learned: whether this worker still owns the job, and whether cancel was asked."""

    alive: bool
    cancel_requested: bool


def backoff_seconds(attempts: int, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Delay before retry number `attempts` (1, 2, …): base · 2^(attempts-1), capped."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


def _event(db: Session, job: Job | int, from_status: str | None, to_status: str, worker_id: str | None,
           message: str = "") -> None:
    job_id = job if isinstance(job, int) else job.id
    queries.add(db, JobEvent(job_id=job_id, from_status=from_status, to_status=to_status, worker_id=worker_id,
                             message=message[:10_000]))
    _log_transition(job if isinstance(job, Job) else queries.get(db, job_id), job_id, from_status, to_status,
                    worker_id, message)


def _transition_name(from_status: str | None, to_status: str) -> str:
    if from_status is None:
        return "queued"
    if to_status == JobStatus.RUNNING:
        return "started" if from_status == JobStatus.QUEUED else "cancel_requested"
    if to_status == JobStatus.QUEUED:
        return "retried" if from_status in UNSUCCESSFUL_JOB_STATUSES else "requeued"
    return to_status


def _log_transition(job: Job | None, job_id: int, from_status: str | None, to_status: str, worker_id: str | None,
                    message: str) -> None:
    """One log line per state change, carrying the id of the request that enqueued the job (if any)."""
    name = _transition_name(from_status, to_status)
    kind = job.kind if job is not None else "?"
    fields = {"event": f"job.{name}", "job_id": job_id, "job_kind": kind, "from_status": from_status,
              "to_status": to_status, "worker_id": worker_id,
              "project_id": job.project_id if job is not None else None,
              "attempt": job.attempts if job is not None else None}
    request_id = job.payload.get(REQUEST_ID_KEY) if job is not None and job.payload else None
    if request_id:
        fields["request_id"] = request_id
    first_line = message.splitlines()[0][:300] if message else ""
    level = logging.WARNING if to_status == JobStatus.FAILED else logging.INFO
    log.log(level, "job %s (%s) %s%s", job_id, kind, name, f": {first_line}" if first_line else "", extra=fields)


def find(db: Session, job_id: int) -> Job | None:
    """The job, or None."""
    return queries.get(db, job_id)


def _get(db: Session, job_id: int) -> Job:
    job = queries.get_for_update(db, job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} not found")
    return job


def enqueue(
    db: Session,
    kind: str,
    project_id: int | None,
    payload: dict[str, Any] | None = None,
    *,
    max_attempts: int = 3,
    parent_id: int | None = None,
    delay_seconds: float = 0.0,
    now: datetime | None = None,
) -> tuple[Job, bool]:
    """Queue a job; returns (job, created). An active job of the same (project, kind) is returned instead.

    The partial unique index is the real guard: a concurrent enqueue that loses the race gets the winner's job.
    """
    data = validate_payload(kind, payload)
    request_id = current_request_id()
    if request_id and REQUEST_ID_KEY not in data:
        data[REQUEST_ID_KEY] = request_id  # the worker logs the job's lines under the request that asked for it
    existing = queries.active_job(db, project_id, kind)
    if existing is not None:
        return existing, False
    now = now or utcnow()
    job = Job(kind=kind, project_id=project_id, payload=data, status=JobStatus.QUEUED, attempts=0,
              max_attempts=max(1, max_attempts), scheduled_at=now + timedelta(seconds=delay_seconds),
              parent_id=parent_id, created_at=now, progress=0.0, progress_message="")
    try:
        with db.begin_nested():
            queries.add(db, job)
    except IntegrityError:
        winner = queries.active_job(db, project_id, kind)
        if winner is None:
            raise
        return winner, False
    _event(db, job, None, JobStatus.QUEUED, None, "enqueued" + (f" after job {parent_id}" if parent_id else ""))
    return job, True


def claim(db: Session, worker_id: str, *, kinds: Sequence[str] | None = None, now: datetime | None = None) -> Job | None:
    """Take the oldest due queued job for `worker_id` (status running, attempts + 1), or None."""
    now = now or utcnow()
    values = {"status": JobStatus.RUNNING, "worker_id": worker_id, "heartbeat_at": now, "started_at": now,
              "attempts": Job.attempts + 1, "error": None}
    if db.get_bind().dialect.name == "postgresql":
        job = queries.lock_next_ready(db, now, kinds)
        if job is None:
            return None
        queries.guarded_update(db, job.id, {"status": JobStatus.QUEUED}, values)
        _event(db, job, JobStatus.QUEUED, JobStatus.RUNNING, worker_id,
               f"attempt {job.attempts} of {job.max_attempts}")
        return job
    for job_id in queries.next_ready_ids(db, now, kinds):
        if queries.guarded_update(db, job_id, {"status": JobStatus.QUEUED}, values):
            job = queries.get(db, job_id)
            assert job is not None
            _event(db, job, JobStatus.QUEUED, JobStatus.RUNNING, worker_id,
                   f"attempt {job.attempts} of {job.max_attempts}")
            return job
    return None


def heartbeat(
    db: Session, job_id: int, worker_id: str, *, progress: float | None = None, message: str | None = None,
    now: datetime | None = None,
) -> HeartbeatStatus:
    """Record that `worker_id` is alive on `job_id` (and its progress); tells the worker if it lost the job."""
    values: dict[str, Any] = {"heartbeat_at": now or utcnow()}
    if progress is not None:
        values["progress"] = min(max(float(progress), 0.0), 1.0)
    if message is not None:
        values["progress_message"] = message[:_MESSAGE_LIMIT]
    alive = queries.guarded_update(db, job_id, {"status": JobStatus.RUNNING, "worker_id": worker_id}, values)
    job = queries.get(db, job_id)
    return HeartbeatStatus(alive=alive, cancel_requested=bool(job is not None and job.cancel_requested))


def set_payload(db: Session, job_id: int, worker_id: str, payload: dict[str, Any]) -> bool:
    """Persist payload fields a handler fixed on its first attempt (e.g. the data watermark) for retries."""
    job = queries.get(db, job_id)
    if job is None:
        return False
    data = validate_payload(job.kind, {**job.payload, **payload})
    return queries.guarded_update(db, job_id, {"status": JobStatus.RUNNING, "worker_id": worker_id}, {"payload": data})


def _worker_transition(db: Session, job_id: int, worker_id: str, to_status: str, values: dict[str, Any],
                       message: str) -> bool:
    if not queries.guarded_update(db, job_id, {"status": JobStatus.RUNNING, "worker_id": worker_id},
                                  {"status": to_status, **values}):
        return False
    _event(db, job_id, JobStatus.RUNNING, to_status, worker_id, message)
    return True


def finish(db: Session, job_id: int, worker_id: str, result: dict[str, Any] | None = None) -> bool:
    """Mark the job succeeded with `result`; False when this worker no longer owns it."""
    now = utcnow()
    return _worker_transition(db, job_id, worker_id, JobStatus.SUCCEEDED,
                              {"result": result or {}, "finished_at": now, "progress": 1.0, "heartbeat_at": now},
                              "succeeded")


def fail(
    db: Session, job_id: int, worker_id: str, error: str, *, retryable: bool = True, now: datetime | None = None,
) -> str | None:
    """Record a failed attempt: back to queued after a backoff while attempts remain, else failed.

    Returns the new status, or None when this worker no longer owns the job.
    """
    now = now or utcnow()
    job = queries.get(db, job_id)
    if job is None:
        return None
    if retryable and job.attempts < job.max_attempts and not job.cancel_requested:
        delay = backoff_seconds(job.attempts)
        ok = _worker_transition(
            db, job_id, worker_id, JobStatus.QUEUED,
            {"error": error, "worker_id": None, "scheduled_at": now + timedelta(seconds=delay)},
            f"attempt {job.attempts} failed, retry in {delay:.0f}s: {error}",
        )
        return JobStatus.QUEUED if ok else None
    status = JobStatus.CANCELLED if job.cancel_requested else JobStatus.FAILED
    ok = _worker_transition(db, job_id, worker_id, status, {"error": error, "finished_at": now}, error)
    return status if ok else None


def release(db: Session, job_id: int, worker_id: str, message: str = "worker shut down") -> bool:
    """Give a running job back to the queue at once (graceful shutdown): this attempt does not count."""
    return _worker_transition(db, job_id, worker_id, JobStatus.QUEUED,
                              {"worker_id": None, "attempts": Job.attempts - 1, "scheduled_at": utcnow()}, message)


def mark_cancelled(db: Session, job_id: int, worker_id: str, message: str = "cancelled while running") -> bool:
    """The handler stopped because cancel was requested: the job ends cancelled."""
    return _worker_transition(db, job_id, worker_id, JobStatus.CANCELLED, {"finished_at": utcnow()}, message)


def cancel(db: Session, job_id: int, by: str = "") -> Job:
    """Cancel: a queued job at once; a running job gets `cancel_requested` and stops at its next check."""
    job = _get(db, job_id)
    who = f" by {by}" if by else ""
    if job.status == JobStatus.QUEUED:
        job.status, job.finished_at = JobStatus.CANCELLED, utcnow()
        db.flush()
        _event(db, job, JobStatus.QUEUED, JobStatus.CANCELLED, None, f"cancelled{who}")
    elif job.status == JobStatus.RUNNING:
        if not job.cancel_requested:
            job.cancel_requested = True
            db.flush()
            _event(db, job, JobStatus.RUNNING, JobStatus.RUNNING, job.worker_id, f"cancel requested{who}")
    else:
        raise JobError(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")
    return job


def retry(db: Session, job_id: int, by: str = "") -> Job:
    """Queue a failed or cancelled job again (fresh attempts, same payload, so the same data watermark)."""
    job = _get(db, job_id)
    if job.status not in UNSUCCESSFUL_JOB_STATUSES:
        raise JobError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
    if queries.active_job(db, job.project_id, job.kind) is not None:
        raise JobError(f"another {job.kind} job of this project is already queued or running")
    previous = job.status
    try:
        with db.begin_nested():
            job.status, job.attempts, job.cancel_requested = JobStatus.QUEUED, 0, False
            job.scheduled_at, job.finished_at, job.worker_id = utcnow(), None, None
            db.flush()
    except IntegrityError as exc:
        raise JobError(f"another {job.kind} job of this project is already queued or running") from exc
    _event(db, job, previous, JobStatus.QUEUED, None, "retried" + (f" by {by}" if by else ""))
    return job


def requeue_stale(db: Session, stale_seconds: float, *, now: datetime | None = None) -> list[int]:
    """Running jobs whose heartbeat is older than `stale_seconds` (their worker died): requeue or fail them.

    The dead attempt counts; a job that has used all its attempts fails, a cancelled one ends cancelled.
    """
    now = now or utcnow()
    touched: list[int] = []
    for job in queries.stale_running(db, now - timedelta(seconds=stale_seconds)):
        dead_worker = job.worker_id
        seen = job.heartbeat_at.isoformat() if job.heartbeat_at else "never"
        why = f"heartbeat stale (last {seen}, worker {dead_worker})"
        if job.cancel_requested:
            to, values = JobStatus.CANCELLED, {"finished_at": now, "error": why}
        elif job.attempts >= job.max_attempts:
            to, values = JobStatus.FAILED, {"finished_at": now, "error": f"{why}; {job.attempts} attempts used"}
        else:
            to, values = JobStatus.QUEUED, {"worker_id": None, "scheduled_at": now, "error": why}
        expect = {"status": JobStatus.RUNNING, "worker_id": dead_worker}
        if queries.guarded_update(db, job.id, expect, {"status": to, **values}):
            _event(db, job.id, JobStatus.RUNNING, to, dead_worker, why)
            touched.append(job.id)
    return touched
