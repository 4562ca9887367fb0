"""One error vocabulary: a domain error raised by a service becomes an RFC 9457 problem for the API and an
error page for a browser, and the request's transaction is rolled back."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.jobs import queue
from app.models import Project
from tests.factories import api_token, login, make_project, make_user


def test_api_not_found_is_a_problem_document(client: TestClient, db: Session) -> None:
    headers = api_token(db, make_user(db, "admin"))
    db.commit()
    response = client.get("/api/projects/987654", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json() == {"type": "about:blank", "title": "Not found", "status": 404,
                               "detail": "project 987654 not found"}


def test_api_without_credentials_is_a_401_problem(client: TestClient) -> None:
    response = client.get("/api/projects")
    assert response.status_code == 401
    assert response.json()["title"] == "Unauthorized" and response.json()["status"] == 401


def test_browser_gets_an_error_page_for_the_same_error(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    db.commit()
    login(client, admin.email)
    response = client.get("/projects/987654/jobs")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "project 987654 not found" in response.text


def test_a_conflict_from_a_service_is_a_409_problem(client: TestClient, db: Session) -> None:
    """Cancelling a finished job is a JobError (a Conflict): 409, and no event is recorded for it."""
    headers = api_token(db, make_user(db, "admin"))
    project = make_project(db)
    job, _ = queue.enqueue(db, "train_reward_model", project.id)
    job.status = "succeeded"
    db.flush()
    events_before = len(queue.events_of(db, job.id))
    db.commit()
    response = client.post(f"/api/jobs/{job.id}/cancel", headers=headers)
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "Conflict" and "only queued or running" in response.json()["detail"]
    assert len(queue.events_of(db, job.id)) == events_before


def test_an_unknown_api_route_is_a_problem_too(client: TestClient) -> None:
    response = client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_refusal_after_a_write_rolls_the_write_back(client: TestClient, db: Session) -> None:
    """The rename is applied before the k range is found wrong: the 422 leaves the project as it was."""
    headers = api_token(db, make_user(db, "admin"))
    project = make_project(db, "before")
    db.commit()
    response = client.patch(f"/api/projects/{project.id}", headers=headers,
                            json={"name": "after", "k_min": 6, "k_max": 3})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "k_max (3) must be at least k_min (6)" in response.json()["detail"]
    db.expire_all()
    assert db.get(Project, project.id).name == "before"  # type: ignore[union-attr]


def test_a_forbidden_write_is_a_403_problem_and_writes_nothing(client: TestClient, db: Session) -> None:
    """A read-only token refused by the route's guard (a Forbidden, not an HTTPException) changes nothing."""
    headers = {"Authorization": f"Bearer {auth.create_api_token(db, make_user(db, 'admin'), scope='read')}"}
    project = make_project(db, "kept")
    db.commit()
    response = client.patch(f"/api/projects/{project.id}", headers=headers, json={"name": "renamed"})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"] == "This API token is read-only; use a token with full scope."
    db.expire_all()
    assert db.get(Project, project.id).name == "kept"  # type: ignore[union-attr]
