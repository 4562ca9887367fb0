"""The job queue on SQLite and Postgres: one active job per (project, kind), exclusive claims under racing
threads, heartbeats, stale requeue, retries with backoff, max attempts, cancel and the event trail."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db import make_session_factory, unit_of_work
from app.jobs import queue
from app.jobs.schemas import JobPayloadError
from app.models import Job, JobEvent, utcnow
from tests.factories import make_project


def _events(db: Session, job_id: int) -> list[tuple[str | None, str]]:
    rows = db.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
    return [(e.from_status, e.to_status) for e in rows]


def test_enqueue_twice_returns_the_active_job(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = make_project(db)
    first, created = queue.enqueue(db, "train_reward_model", project.id, {"chain": True})
    again, created_again = queue.enqueue(db, "train_reward_model", project.id)
    db.commit()
    assert created and not created_again and again.id == first.id
    other, created_other = queue.enqueue(db, "train_policy", project.id)
    assert created_other and other.id != first.id
    assert db.scalar(select(Job.payload).where(Job.id == first.id)) == {"watermark": None, "chain": True,
                                                                           "requested_by": "", "test_set_version": None}
    job = queue.claim(db, "w1", kinds=["train_reward_model"])
    assert job is not None and job.id == first.id
    assert queue.finish(db, job.id, "w1", {"ok": 1})
    fresh, created_fresh = queue.enqueue(db, "train_reward_model", project.id)
    db.commit()
    assert created_fresh and fresh.id != first.id


def test_payload_is_validated_per_kind(db: Session) -> None:
    project = make_project(db)
    with pytest.raises(JobPayloadError, match="limit"):
        queue.enqueue(db, "sample_completions", project.id, {"limit": 0})
    with pytest.raises(JobPayloadError, match="unknown job kind"):
        queue.enqueue(db, "mine_bitcoin", project.id)
    with pytest.raises(JobPayloadError, match="surprise"):
        queue.enqueue(db, "train_policy", project.id, {"surprise": 1})


def test_racing_workers_never_claim_the_same_job(db: Session, clean_engine: Engine, dialect: str) -> None:
    projects = [make_project(db) for _ in range(4)]
    ids = []
    for p in projects:
        for kind in ("sample_completions", "train_reward_model", "train_policy"):
            ids.append(queue.enqueue(db, kind, p.id)[0].id)
    db.commit()
    factory = make_session_factory(clean_engine)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            start.wait(timeout=30)
            while True:
                with unit_of_work(factory) as session:
                    job = queue.claim(session, name)
                    if job is None:
                        return
                    with lock:
                        claimed.append((name, job.id))
        except BaseException as exc:  # surfaced below; a thread must not swallow failures
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    counts = Counter(job_id for _, job_id in claimed)
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}, f"{dialect}: a job was claimed twice: {counts}"
    db.expire_all()
    assert all(j.status == "running" and j.attempts == 1 for j in db.scalars(select(Job)))


def test_stale_heartbeat_requeues_then_fails_at_max_attempts(db: Session) -> None:
    project = make_project(db)
    job, _ = queue.enqueue(db, "train_policy", project.id, max_attempts=2)
    db.commit()
    t0 = utcnow()
    assert queue.claim(db, "dead-1", now=t0) is not None
    assert queue.requeue_stale(db, 30, now=t0 + timedelta(seconds=10)) == []  # still fresh
    status = queue.heartbeat(db, job.id, "dead-1", progress=0.25, message="step 5", now=t0 + timedelta(seconds=20))
    assert status.alive and not status.cancel_requested
    assert queue.requeue_stale(db, 30, now=t0 + timedelta(seconds=40)) == []  # the heartbeat moved it on
    assert queue.requeue_stale(db, 30, now=t0 + timedelta(seconds=60)) == [job.id]
    db.commit()
    db.refresh(job)
    assert job.status == "queued" and job.attempts == 1 and "heartbeat stale" in (job.error or "")
    # The dead worker wakes up: it no longer owns the job and cannot finish it.
    assert not queue.heartbeat(db, job.id, "dead-1").alive
    assert queue.claim(db, "dead-2", now=t0 + timedelta(seconds=61)) is not None
    assert not queue.finish(db, job.id, "dead-1", {"late": True})
    assert queue.requeue_stale(db, 30, now=t0 + timedelta(seconds=200)) == [job.id]
    db.commit()
    db.refresh(job)
    assert job.status == "failed" and job.attempts == 2 and "2 attempts used" in (job.error or "")
    assert _events(db, job.id) == [
        (None, "queued"), ("queued", "running"), ("running", "queued"), ("queued", "running"), ("running", "failed"),
    ]


def test_failures_retry_with_exponential_backoff(db: Session) -> None:
    project = make_project(db)
    job, _ = queue.enqueue(db, "sample_completions", project.id, max_attempts=3)
    db.commit()
    t = utcnow()
    delays = []
    for attempt in (1, 2):
        claimed = queue.claim(db, "w", now=t)
        assert claimed is not None and claimed.attempts == attempt
        assert queue.fail(db, job.id, "w", f"boom {attempt}", now=t) == "queued"
        db.commit()
        db.refresh(job)
        delay = (job.scheduled_at - t).total_seconds()
        delays.append(delay)
        assert queue.claim(db, "w", now=t + timedelta(seconds=delay - 1)) is None  # not due yet
        t = t + timedelta(seconds=delay)
    assert delays == [queue.backoff_seconds(1), queue.backoff_seconds(2)] and delays[1] == 2 * delays[0]
    assert queue.claim(db, "w", now=t) is not None
    assert queue.fail(db, job.id, "w", "boom 3", now=t) == "failed"
    db.commit()
    db.refresh(job)
    assert job.status == "failed" and job.error == "boom 3" and job.finished_at is not None
    # A non-retryable error fails at once, whatever attempts remain.
    other, _ = queue.enqueue(db, "train_policy", project.id, max_attempts=5)
    assert queue.claim(db, "w") is not None
    assert queue.fail(db, other.id, "w", "disk full", retryable=False) == "failed"
    retried = queue.retry(db, other.id, by="admin@example.org")
    assert retried.status == "queued" and retried.attempts == 0


def test_cancel_queued_and_running(db: Session) -> None:
    project = make_project(db)
    queued, _ = queue.enqueue(db, "train_policy", project.id)
    queue.cancel(db, queued.id, by="admin")
    assert queued.status == "cancelled"
    with pytest.raises(queue.JobError, match="cancelled"):
        queue.cancel(db, queued.id)
    running, _ = queue.enqueue(db, "train_policy", project.id)
    assert queue.claim(db, "w") is not None
    queue.cancel(db, running.id, by="admin")
    db.commit()
    assert queue.heartbeat(db, running.id, "w").cancel_requested
    assert queue.mark_cancelled(db, running.id, "w")
    db.commit()
    db.refresh(running)
    assert running.status == "cancelled"
    assert _events(db, running.id) == [
        (None, "queued"), ("queued", "running"), ("running", "running"), ("running", "cancelled"),
    ]
    # A failure after cancel was requested ends cancelled, not queued for retry.
    third, _ = queue.enqueue(db, "train_policy", project.id)
    assert queue.claim(db, "w") is not None
    queue.cancel(db, third.id)
    assert queue.fail(db, third.id, "w", "stopped") == "cancelled"


def test_release_gives_the_attempt_back(db: Session) -> None:
    project = make_project(db)
    job, _ = queue.enqueue(db, "train_reward_model", project.id, max_attempts=1)
    assert queue.claim(db, "w") is not None
    assert queue.release(db, job.id, "w", "SIGTERM")
    db.commit()
    db.refresh(job)
    assert job.status == "queued" and job.attempts == 0 and job.worker_id is None
