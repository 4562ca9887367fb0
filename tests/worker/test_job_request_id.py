"""A job enqueued by a web request is run by the worker under that request's id: the handler's log lines and
the worker's own carry it, the handler never sees it in its payload, and the outcome line has the duration."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.jobs.schemas import REQUEST_ID_KEY, SampleCompletionsPayload
from app.logs import record_request_id
from app.models import Job, Prompt
from app.settings import Settings
from tests.factories import api_token, make_project, make_user
from worker import loop
from worker.context import JobContext


def test_the_worker_logs_a_job_under_the_request_that_enqueued_it(
    client: TestClient, db: Session, clean_engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = make_project(db)
    db.add(Prompt(project_id=project.id, external_id="x", text="hi", content_hash="b" * 64))
    headers = api_token(db, make_user(db, "admin"))
    db.commit()
    run = client.post(f"/api/projects/{project.id}/loop/run", headers={**headers, "X-Request-ID": "run-loop-9"})
    assert run.status_code == 200 and run.json()["payload"][REQUEST_ID_KEY] == "run-loop-9"
    seen: list[dict[str, Any]] = []

    def handler(ctx: JobContext) -> dict[str, Any]:
        seen.append(ctx.payload)
        SampleCompletionsPayload.model_validate(ctx.payload)  # extra="forbid": the id must not reach it
        logging.getLogger("prefloop.worker.handlers.test").info("sampling for job %s", ctx.job_id)
        return {"sampled": 0}

    monkeypatch.setattr(loop, "load_handler", lambda _kind: handler)
    caplog.set_level(logging.INFO, logger="prefloop")
    config = loop.WorkerConfig(worker_id="w-test", once=True, run_scheduler=False)
    assert loop.run_worker(settings, config, engine=clean_engine) == 1
    assert seen and REQUEST_ID_KEY not in seen[0]
    by_name = {r.getMessage(): r for r in caplog.records}
    handler_line = by_name[f"sampling for job {run.json()['id']}"]
    assert record_request_id(handler_line) == "run-loop-9"
    outcome = next(r for r in caplog.records if r.name == "prefloop.worker" and getattr(r, "outcome", None))
    assert outcome.outcome == "succeeded" and record_request_id(outcome) == "run-loop-9"  # type: ignore[attr-defined]
    assert outcome.duration_seconds >= 0  # type: ignore[attr-defined]
    succeeded = [r for r in caplog.records if getattr(r, "event", None) == "job.succeeded"]
    assert [record_request_id(r) for r in succeeded] == ["run-loop-9"]
    db.expire_all()
    assert db.get(Job, run.json()["id"]).status == "succeeded"  # type: ignore[union-attr]
