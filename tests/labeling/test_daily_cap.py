"""`labeling.daily_cap`: once an annotator's rankings of the last 24 hours in a project reach it, no new task
is handed out (429 with a message saying when the next opens); a task already held can still be submitted,
other annotators and other projects are unaffected, and older rankings leave the window."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import Ranking, utcnow
from tests.factories import api_token, login, make_user
from tests.labeling.helpers import seeded_project


def _rank(client: TestClient, project_id: int, headers: dict[str, str]) -> None:
    task = client.get(f"/api/projects/{project_id}/tasks/next", headers=headers)
    assert task.status_code == 200, task.text
    body = {"ranks": {str(c["id"]): i + 1 for i, c in enumerate(task.json()["completions"])}}
    done = client.post(f"/api/assignments/{task.json()['assignment_id']}/ranking", json=body, headers=headers)
    assert done.status_code == 200, done.text


def test_the_daily_cap_stops_new_claims_until_rankings_age_out(client: TestClient, db: Session) -> None:
    capped = seeded_project(db, prompts=6, k=3, settings={"labeling": {"daily_cap": 2}})
    uncapped = seeded_project(db, prompts=2, k=3)
    annotator, other = make_user(db), make_user(db)
    headers, other_headers = api_token(db, annotator), api_token(db, other)
    db.commit()

    _rank(client, capped.id, headers)
    held = client.get(f"/api/projects/{capped.id}/tasks/next", headers=headers).json()  # claimed before the cap
    body = {"ranks": {str(c["id"]): i + 1 for i, c in enumerate(held["completions"])}}
    assert client.post(f"/api/assignments/{held['assignment_id']}/ranking", json=body, headers=headers).status_code == 200

    refused = client.get(f"/api/projects/{capped.id}/tasks/next", headers=headers)
    assert refused.status_code == 429
    assert "daily cap of 2" in refused.text and "next task opens at" in refused.text
    _rank(client, capped.id, other_headers)  # the cap is per annotator...
    _rank(client, uncapped.id, headers)  # ...and per project

    login(client, annotator.email)
    page = client.get(f"/projects/{capped.id}/label")
    assert page.status_code == 429 and "daily cap of 2" in page.text

    # A day later the first rankings have left the window: one more task.
    db.execute(update(Ranking).where(Ranking.annotator_id == annotator.id, Ranking.project_id == capped.id)
               .values(created_at=utcnow() - timedelta(hours=25)))
    db.commit()
    _rank(client, capped.id, headers)
