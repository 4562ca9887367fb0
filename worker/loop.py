"""The worker loop: requeue stale jobs, run the scheduler tick, claim a job, run its handler with a heartbeat
thread, then finish, fail (with retry), release or cancel it.

SIGTERM/SIGINT set the shutdown flag: the running handler sees `should_stop()`, checkpoints its current step
and returns; the job goes back to the queue (the attempt does not count) and the process exits cleanly.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db import create_db_engine, make_session_factory, unit_of_work
from app.jobs import queries as job_queries
from app.jobs import queue
from app.jobs.schemas import split_request_id
from app.logs import bound_request_id
from app.loop import chain
from app.models.enums import UNSUCCESSFUL_JOB_STATUSES, JobKind, JobStatus
from app.registry import service as registry
from app.scheduler import service as scheduler
from app.settings import Settings
from worker import crashpoints
from worker.context import JobContext, JobFailure, JobStopped

log = logging.getLogger("prefloop.worker")

Handler = Callable[[JobContext], dict[str, Any]]
HANDLER_MODULES: dict[str, str] = {
    JobKind.SAMPLE_COMPLETIONS: "worker.handlers.sample_completions",
    JobKind.TRAIN_REWARD_MODEL: "worker.handlers.train_reward_model",
    JobKind.TRAIN_POLICY: "worker.handlers.train_policy",
    JobKind.SCORE_PROMPTS: "worker.handlers.score_prompts",
    JobKind.TRAIN_SFT: "worker.handlers.train_sft",
}


@dataclass
class WorkerConfig:
    """How one worker process behaves (CLI options of `prefloop worker`)."""

    worker_id: str = ""
    poll_seconds: float = 2.0
    heartbeat_seconds: float = 5.0
    stale_seconds: float = 60.0
    once: bool = False
    kinds: tuple[str, ...] | None = None
    run_scheduler: bool = True

    def __post_init__(self) -> None:
        if not self.worker_id:
            self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        if self.stale_seconds <= self.heartbeat_seconds:
            raise ValueError("stale_seconds must be larger than heartbeat_seconds")


def load_handler(kind: str) -> Handler:
    module_name = HANDLER_MODULES.get(kind)
    if module_name is None:
        raise JobFailure(f"no handler for job kind {kind!r}", retryable=False)
    handler: Handler = importlib.import_module(module_name).run
    return handler


class Heartbeat(threading.Thread):
    """Writes heartbeat + progress on its own connection; learns about cancel requests and lost ownership."""

    def __init__(self, ctx: JobContext, factory: sessionmaker[Session], interval: float) -> None:
        super().__init__(name=f"heartbeat-{ctx.job_id}", daemon=True)
        self.ctx, self.factory, self.interval = ctx, factory, interval
        self.stopped = threading.Event()

    def beat(self) -> None:
        with unit_of_work(self.factory) as db:
            status = queue.heartbeat(db, self.ctx.job_id, self.ctx.worker_id, progress=self.ctx.fraction,
                                     message=self.ctx.message)
        self.ctx.cancel_requested = self.ctx.cancel_requested or status.cancel_requested
        if not status.alive:
            self.ctx.lost = True

    def run(self) -> None:
        while not self.stopped.is_set():
            # Wake on the interval, or sooner (at most once a second) when the handler reports progress.
            self.ctx.progress_changed.wait(self.interval)
            if self.stopped.is_set():
                return
            self.ctx.progress_changed.clear()
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a DB hiccup must not kill the job; the next beat retries
                log.warning("heartbeat for job %s failed", self.ctx.job_id, exc_info=True)
            self.stopped.wait(min(1.0, self.interval))

    def stop(self) -> None:
        self.stopped.set()
        self.ctx.progress_changed.set()
        self.join(timeout=30)


def _error_text(exc: BaseException) -> str:
    tail = "".join(traceback.format_exception(exc)[-8:])
    return f"{type(exc).__name__}: {exc}\n\n{tail}"


def run_job(ctx: JobContext, factory: sessionmaker[Session], config: WorkerConfig,
            handler: Handler | None = None) -> str:
    """Run one claimed job to an outcome; returns the job's new status (or 'lost')."""
    beat = Heartbeat(ctx, factory, config.heartbeat_seconds)
    beat.start()
    result: dict[str, Any] | None = None
    error: str | None = None
    retryable = True
    stopped = False
    try:
        result = (handler or load_handler(ctx.kind))(ctx)
    except JobStopped:
        stopped = True
    except JobFailure as exc:
        error, retryable = str(exc), exc.retryable
    except Exception as exc:  # noqa: BLE001 - any handler error becomes a recorded, retried failure
        error = _error_text(exc)
    finally:
        beat.stop()
    with unit_of_work(factory) as db:
        if stopped:
            reason = ctx.stop_reason
            if reason == "cancel":
                queue.mark_cancelled(db, ctx.job_id, ctx.worker_id)
                registry.abandon_job_versions(db, ctx.job_id, "cancelled")
                return JobStatus.CANCELLED
            if reason == "shutdown":
                queue.release(db, ctx.job_id, ctx.worker_id, "worker shut down; state saved for resume")
                return JobStatus.QUEUED
            return "lost"
        if error is not None:
            status = queue.fail(db, ctx.job_id, ctx.worker_id, error, retryable=retryable)
            if status in UNSUCCESSFUL_JOB_STATUSES:
                registry.abandon_job_versions(db, ctx.job_id, error.splitlines()[0])
            log.warning("job %s (%s) failed: %s", ctx.job_id, ctx.kind, error.splitlines()[0])
            return status or "lost"
        if not queue.finish(db, ctx.job_id, ctx.worker_id, result):
            return "lost"
        job = job_queries.get(db, ctx.job_id)
        if job is not None:
            try:
                with db.begin_nested():  # the next loop step must never undo this job's success
                    chain.after_success(db, job)
            except Exception:  # noqa: BLE001 - logged; the job itself succeeded
                log.exception("job %s succeeded but its next loop step could not be enqueued", ctx.job_id)
        return JobStatus.SUCCEEDED


def _maintenance(factory: sessionmaker[Session], config: WorkerConfig) -> None:
    with unit_of_work(factory) as db:
        requeued = queue.requeue_stale(db, config.stale_seconds)
        if requeued:
            log.info("requeued stale jobs %s", requeued)
    if config.run_scheduler:
        try:
            with unit_of_work(factory) as db:
                for job in scheduler.tick(db):
                    log.info("scheduler enqueued %s job %s for project %s", job.kind, job.id, job.project_id)
        except Exception:  # noqa: BLE001 - a broken project setting must not stop the queue
            log.exception("scheduler tick failed; jobs are still claimed")


def claim_context(factory: sessionmaker[Session], settings: Settings, config: WorkerConfig,
                  shutdown: threading.Event) -> JobContext | None:
    with unit_of_work(factory) as db:
        job = queue.claim(db, config.worker_id, kinds=config.kinds)
        if job is None:
            return None
        payload, request_id = split_request_id(job.payload)
        return JobContext(job_id=job.id, kind=job.kind, project_id=job.project_id, payload=payload,
                          attempt=job.attempts, worker_id=config.worker_id, settings=settings,
                          session_factory=factory, shutdown=shutdown, request_id=request_id)


def run_worker(settings: Settings, config: WorkerConfig, engine: Engine | None = None,
               shutdown: threading.Event | None = None) -> int:
    """The loop. Returns the number of jobs run. With `once`, exits when no job is ready."""
    crashpoints.install_from_env()
    own_engine = engine is None
    engine = engine or create_db_engine(settings.database_url)
    factory = make_session_factory(engine)
    shutdown = shutdown or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda _s, _f: shutdown.set())
    processed = 0
    log.info("worker %s started (poll %.1fs, heartbeat %.1fs, stale %.1fs)", config.worker_id,
             config.poll_seconds, config.heartbeat_seconds, config.stale_seconds)
    try:
        while not shutdown.is_set():
            try:
                _maintenance(factory, config)
                ctx = claim_context(factory, settings, config, shutdown)
            except Exception:  # noqa: BLE001 - database down: wait and try again rather than exit
                log.warning("worker %s: queue unavailable", config.worker_id, exc_info=True)
                ctx = None
                if config.once:
                    raise
            if ctx is None:
                if config.once:
                    break
                shutdown.wait(config.poll_seconds)
                continue
            # The job's lines (and jobs it enqueues) carry the id of the request that asked for it.
            with bound_request_id(ctx.request_id):
                fields = {"job_id": ctx.job_id, "job_kind": ctx.kind, "attempt": ctx.attempt}
                log.info("job %s (%s) attempt %s started", ctx.job_id, ctx.kind, ctx.attempt, extra=fields)
                began = time.monotonic()
                outcome = run_job(ctx, factory, config)
                log.info("job %s (%s) -> %s", ctx.job_id, ctx.kind, outcome,
                         extra={**fields, "outcome": outcome, "duration_seconds": round(time.monotonic() - began, 3)})
            processed += 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if own_engine:
            engine.dispose()
    return processed
