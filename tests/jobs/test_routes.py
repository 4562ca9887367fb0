"""Admin job pages and JSON: lists, the self-replacing progress fragment, cancel, retry, run the loop now,
the scheduler form, and that annotators are refused."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.jobs import queue
from app.models import Job, Prompt
from app.projects.service import settings_of
from tests.factories import api_token, login, make_project, make_prompt, make_user


def _admin(db: Session, client: TestClient) -> str:
    user = make_user(db, "admin")
    db.commit()
    return login(client, user.email)


def test_pages_progress_cancel_and_retry(db: Session, client: TestClient) -> None:
    project = make_project(db, name="Evil <script>alert(1)</script>")
    running, _ = queue.enqueue(db, "train_reward_model", project.id)
    assert queue.claim(db, "w1") is not None
    queue.heartbeat(db, running.id, "w1", progress=0.42, message="step <b>5</b>")
    queued, _ = queue.enqueue(db, "train_policy", project.id)
    db.commit()
    csrf = _admin(db, client)

    page = client.get("/admin/jobs")
    assert page.status_code == 200 and "train_reward_model" in page.text
    assert "<script>alert(1)" not in page.text and ' style="' not in page.text
    listing = client.get(f"/projects/{project.id}/jobs")
    assert listing.status_code == 200 and "Run the loop now" in listing.text
    assert client.get("/admin/jobs?status=bogus").status_code == 400

    fragment = client.get(f"/jobs/{running.id}/progress", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in fragment.text and '<progress max="100" value="42"' in fragment.text
    assert "step &lt;b&gt;5&lt;/b&gt;" in fragment.text

    assert client.post(f"/jobs/{queued.id}/cancel", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.post(f"/jobs/{running.id}/cancel", data={"csrf_token": "wrong"}).status_code == 403
    assert client.post(f"/jobs/{running.id}/cancel", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    db.expire_all()
    assert db.get(Job, queued.id).status == "cancelled"  # type: ignore[union-attr]
    assert db.get(Job, running.id).cancel_requested  # type: ignore[union-attr]
    assert queue.mark_cancelled(db, running.id, "w1")
    db.commit()
    done = client.get(f"/jobs/{running.id}/progress", headers={"HX-Request": "true"})
    assert "hx-trigger" not in done.text and "cancelled" in done.text  # finished: polling stops

    detail = client.get(f"/jobs/{running.id}")
    assert "cancel requested by" in detail.text and "Retry" in detail.text
    assert client.post(f"/jobs/{running.id}/retry", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    db.expire_all()
    assert db.get(Job, running.id).status == "queued"  # type: ignore[union-attr]
    db.commit()  # release SQLite's write lock before the next request
    again = client.post(f"/jobs/{running.id}/retry", data={"csrf_token": csrf})
    assert again.status_code == 409 and "queued" in again.text


def test_run_loop_now_and_schedule_form(db: Session, client: TestClient) -> None:
    project = make_project(db)
    make_prompt(db, project, 0)
    db.commit()
    csrf = _admin(db, client)
    response = client.post(f"/projects/{project.id}/loop/run", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    job = db.query(Job).filter(Job.project_id == project.id).one()
    assert job.kind == "sample_completions" and response.headers["location"] == f"/jobs/{job.id}"
    db.commit()
    saved = client.post(f"/projects/{project.id}/schedule", follow_redirects=False,
                        data={"csrf_token": csrf, "enabled": "true", "retrain_every": "7", "prompts_per_round": "3"})
    assert saved.status_code == 303
    db.expire_all()
    schedule = settings_of(db.get(type(project), project.id)).schedule  # type: ignore[arg-type]
    assert (schedule.enabled, schedule.retrain_every, schedule.prompts_per_round) == (True, 7, 3)
    db.commit()
    bad = client.post(f"/projects/{project.id}/schedule", data={"csrf_token": csrf, "retrain_every": "0",
                                                                 "prompts_per_round": "3"})
    assert bad.status_code == 422


def test_json_api_and_authorization(db: Session, client: TestClient) -> None:
    project = make_project(db)
    db.add(Prompt(project_id=project.id, external_id="x", text="hi", content_hash="a" * 64))
    admin_headers = api_token(db, make_user(db, "admin"))
    annotator_headers = api_token(db, make_user(db, "annotator"))
    db.commit()
    run = client.post(f"/api/projects/{project.id}/loop/run", headers=admin_headers)
    assert run.status_code == 200 and run.json()["kind"] == "sample_completions"
    job_id = run.json()["id"]
    assert client.post(f"/api/projects/{project.id}/loop/run", headers=admin_headers).json()["id"] == job_id
    listed = client.get(f"/api/projects/{project.id}/jobs", headers=admin_headers).json()
    assert [j["id"] for j in listed] == [job_id]
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=admin_headers).json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=admin_headers).status_code == 409
    assert client.post(f"/api/jobs/{job_id}/retry", headers=admin_headers).json()["status"] == "queued"
    assert client.get("/api/jobs/999999", headers=admin_headers).status_code == 404
    for method, url in (("get", f"/api/jobs/{job_id}"), ("post", f"/api/jobs/{job_id}/cancel"),
                        ("get", f"/api/projects/{project.id}/jobs"), ("post", f"/api/projects/{project.id}/loop/run")):
        assert getattr(client, method)(url, headers=annotator_headers).status_code == 403
    annotator = make_user(db, "annotator")
    db.commit()
    login(client, annotator.email)
    assert client.get("/admin/jobs", follow_redirects=False).status_code == 403
    assert client.get(f"/jobs/{job_id}/progress", follow_redirects=False).status_code == 403
