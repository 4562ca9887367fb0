"""Job transitions are logged (queued, started, succeeded, requeued, failed, retried) with the job's fields, and
the id of the request that enqueued a job travels in its payload, invisible to the handler's payload model."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.orm import Session

from app.jobs import queue
from app.jobs.schemas import REQUEST_ID_KEY, TrainRewardModelPayload, split_request_id
from app.logs import bound_request_id, record_request_id
from tests.factories import make_project


def _transitions(caplog: pytest.LogCaptureFixture, job_id: int) -> list[tuple[str, str, str | None]]:
    return [(r.event, r.levelname, record_request_id(r))  # type: ignore[attr-defined]
            for r in caplog.records if r.name == "prefloop.jobs" and getattr(r, "job_id", None) == job_id]


def test_every_transition_is_logged(db: Session, dialect: str, caplog: pytest.LogCaptureFixture) -> None:
    assert dialect in ("sqlite", "postgresql")
    caplog.set_level(logging.INFO, logger="prefloop.jobs")
    project = make_project(db)
    ok, _ = queue.enqueue(db, "train_reward_model", project.id)
    assert queue.claim(db, "w1", kinds=["train_reward_model"]) is not None
    assert queue.finish(db, ok.id, "w1", {"done": True})
    bad, _ = queue.enqueue(db, "train_policy", project.id, max_attempts=2)
    assert queue.claim(db, "w1", kinds=["train_policy"]) is not None
    assert queue.fail(db, bad.id, "w1", "CUDA out of memory\ntraceback…") == "queued"
    db.commit()
    assert _transitions(caplog, ok.id) == [("job.queued", "INFO", None), ("job.started", "INFO", None),
                                           ("job.succeeded", "INFO", None)]
    started = next(r for r in caplog.records if getattr(r, "event", "") == "job.started")
    assert (started.job_kind, started.project_id, started.worker_id, started.attempt) == (  # type: ignore[attr-defined]
        "train_reward_model", project.id, "w1", 1)
    requeued = [r for r in caplog.records if getattr(r, "event", "") == "job.requeued"]
    assert len(requeued) == 1 and requeued[0].getMessage().endswith("CUDA out of memory")  # first line only
    assert requeued[0].to_status == "queued"  # type: ignore[attr-defined]


def test_a_final_failure_is_a_warning_and_a_retry_is_logged(db: Session, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="prefloop.jobs")
    project = make_project(db)
    job, _ = queue.enqueue(db, "score_prompts", project.id, max_attempts=1)
    assert queue.claim(db, "w1") is not None
    assert queue.fail(db, job.id, "w1", "no reward model", retryable=False) == "failed"
    queue.retry(db, job.id, by="admin@example.org")
    db.commit()
    events = [(e, level) for e, level, _ in _transitions(caplog, job.id)]
    assert events == [("job.queued", "INFO"), ("job.started", "INFO"), ("job.failed", "WARNING"),
                      ("job.retried", "INFO")]


def test_the_request_id_travels_with_the_job(db: Session, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="prefloop.jobs")
    project = make_project(db)
    with bound_request_id("click-42"):
        job, _ = queue.enqueue(db, "train_reward_model", project.id, {"chain": True})
    plain, _ = queue.enqueue(db, "train_policy", project.id)  # outside a request: no id
    db.commit()
    assert job.payload[REQUEST_ID_KEY] == "click-42" and REQUEST_ID_KEY not in plain.payload
    # The worker claims outside any request: the started line still names the request that asked for the job.
    claimed = queue.claim(db, "w1", kinds=["train_reward_model"])
    assert claimed is not None and claimed.id == job.id
    assert [rid for _, _, rid in _transitions(caplog, job.id)] == ["click-42", "click-42"]
    # A handler validates the kind's own fields; fixing one on the first attempt keeps the id.
    fields, rid = split_request_id(claimed.payload)
    assert rid == "click-42" and TrainRewardModelPayload.model_validate(fields).chain
    assert queue.set_payload(db, job.id, "w1", {"watermark": 9})
    db.commit()
    db.refresh(claimed)
    assert claimed.payload[REQUEST_ID_KEY] == "click-42" and claimed.payload["watermark"] == 9
