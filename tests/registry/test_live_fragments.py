"""The self-polling fragments of the models page and the job lists: what they render, how fast they poll,
and who may fetch them (anonymous → sign-in, annotator → 403, admin → the fragment); plus the model page's
view-model (sentences, rollback only with a target, readable job results)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.jobs import queue
from app.jobs.views import result_rows
from app.registry import views
from tests.factories import login
from tests.registry.model_scene import build


def _fragments(project_id: int) -> list[str]:
    return [f"/projects/{project_id}/models/live", f"/projects/{project_id}/jobs/live", "/admin/jobs/live",
            "/admin/jobs/live?status=queued"]


def test_anonymous_is_sent_to_sign_in_and_an_annotator_is_refused(db: Session, client: TestClient) -> None:
    scene = build(db)
    db.commit()
    for url in _fragments(scene.project.id):
        plain = client.get(url, follow_redirects=False)
        assert plain.status_code == 303 and plain.headers["location"].startswith("/login"), url
        polled = client.get(url, follow_redirects=False, headers={"HX-Request": "true"})  # htmx: the whole page goes
        assert polled.status_code == 204 and polled.headers["HX-Redirect"].startswith("/login"), url
    login(client, scene.annotator.email)
    for url in _fragments(scene.project.id):
        assert client.get(url, follow_redirects=False).status_code == 403, url


def test_admin_gets_fragments_that_poll_fast_only_while_something_runs(db: Session, client: TestClient) -> None:
    scene = build(db)  # its one job succeeded
    db.commit()
    login(client, scene.admin.email)
    models = client.get(f"/projects/{scene.project.id}/models/live")
    assert models.status_code == 200 and 'id="model-tables"' in models.text and "<html" not in models.text
    assert 'hx-trigger="every 30s"' in models.text and "Roll back" not in models.text
    jobs = client.get(f"/projects/{scene.project.id}/jobs/live")
    assert 'id="job-table"' in jobs.text and 'hx-trigger="every 30s"' in jobs.text
    queued, _ = queue.enqueue(db, "score_prompts", scene.project.id)
    db.commit()
    for url in (f"/projects/{scene.project.id}/models/live", f"/projects/{scene.project.id}/jobs/live",
                "/admin/jobs/live"):
        text = client.get(url).text
        assert 'hx-trigger="every 5s"' in text, url
    assert f'data-job="{queued.id}"' in client.get("/admin/jobs/live?status=queued").text
    assert client.get("/admin/jobs/live?status=bogus").status_code == 400
    assert client.get("/projects/999999/models/live").status_code == 404


def test_rollback_is_offered_only_with_a_target(db: Session, client: TestClient) -> None:
    scene = build(db)
    assert views.rollback_targets([scene.base, scene.reward, scene.policy]) == {"policy": None, "reward": None}
    scene.base.status, scene.policy.status = "candidate", "active"  # base was active before: a target
    db.commit()
    assert views.rollback_targets([scene.base, scene.policy])["policy"] == scene.base
    login(client, scene.admin.email)
    assert "Roll back to policy-v0" in client.get(f"/projects/{scene.project.id}/models").text


@pytest.mark.parametrize(("reason", "sentence"), [
    ("mean reward did not improve (0.17 → 0.16)", "Rejected: mean reward did not improve (0.17 → 0.16)."),
    ("", "Rejected."),
])
def test_status_sentences(db: Session, reason: str, sentence: str) -> None:
    scene = build(db)
    scene.policy.status_reason = reason
    assert views.status_sentence(scene.policy) == sentence


def test_job_results_read_without_escapes() -> None:
    rows = dict(result_rows({"reason": "a → b", "versions": {"policy-v1": 2, "policy-v0": 1}, "kl": 0.187481,
                             "ok": True, "ids": [1, 2], "deep": {"a": [1]}}))
    assert rows == {"reason": "a → b", "versions": "policy-v1: 2, policy-v0: 1", "kl": "0.1875", "ok": "yes",
                    "ids": "1, 2", "deep": '{"a": [1]}'}
