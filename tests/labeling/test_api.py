"""The JSON API end to end through the app: next task, submit (replay, 422, 400), skip, heartbeat, IDOR."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import Assignment, Ranking, Slot, utcnow
from tests.factories import api_token, make_user
from tests.labeling.helpers import seeded_project


def _ranks(task: dict) -> dict[str, int]:
    return {str(c["id"]): i + 1 for i, c in enumerate(task["completions"])}


def test_next_submit_replay_and_nothing_left(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=5, k_max=4)
    headers = api_token(db, make_user(db))
    db.commit()
    response = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers)
    assert response.status_code == 200, response.text
    task = response.json()
    assert [c["letter"] for c in task["completions"]] == ["A", "B", "C", "D"]
    assert task["prompt"]["text"] and task["lease_expires_at"]
    assert (
        client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()["assignment_id"]
        == task["assignment_id"]
    )
    url = f"/api/assignments/{task['assignment_id']}/ranking"
    body = {"ranks": _ranks(task), "rationale": "ok", "flags": {}, "likert": {}, "not_rankable": False}
    first = client.post(url, json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["comparisons"] == 6
    replay = client.post(url, json=body, headers=headers)
    assert replay.status_code == 200 and replay.json() == first.json()
    changed = client.post(url, json={**body, "rationale": "other"}, headers=headers)
    assert changed.status_code == 422
    assert client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).status_code == 204
    assert db.scalar(select(func.count()).select_from(Ranking)) == 1


def test_malformed_rankings_are_400(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    headers = api_token(db, make_user(db))
    db.commit()
    task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()
    url = f"/api/assignments/{task['assignment_id']}/ranking"
    ids = [c["id"] for c in task["completions"]]
    dup = '{"ranks": {"A": 1, "B": 2, "C": 3, "A": 1}}'
    for letter, cid in zip("ABC", ids, strict=True):
        dup = dup.replace(f'"{letter}"', f'"{cid}"')
    cases = [
        client.post(url, content=dup, headers={**headers, "content-type": "application/json"}),
        client.post(url, json={"ranks": {str(ids[0]): 1, str(ids[1]): 2}}, headers=headers),
        client.post(url, json={"ranks": {str(i): "x" for i in ids}}, headers=headers),
        client.post(url, json={"ranks": {str(i): 1 for i in ids}}, headers=headers),
        client.post(
            url, json={"ranks": {**{str(i): n + 1 for n, i in enumerate(ids)}, "999999": 1}}, headers=headers
        ),
        client.post(url, json={"ranks": _ranks(task), "bogus": 1}, headers=headers),
    ]
    assert [r.status_code for r in cases] == [400] * len(cases), [r.text for r in cases]
    assert all(r.json()["detail"] for r in cases)
    assert db.scalar(select(func.count()).select_from(Ranking)) == 0


def test_other_annotators_assignment_is_404_and_unchanged(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3)
    a_headers, b_headers = api_token(db, make_user(db)), api_token(db, make_user(db))
    db.commit()
    task = client.get(f"/api/projects/{project.id}/tasks/next", headers=a_headers).json()
    aid = task["assignment_id"]
    body = {"ranks": _ranks(task)}
    assert client.post(f"/api/assignments/{aid}/ranking", json=body, headers=b_headers).status_code == 404
    assert (
        client.post(f"/api/assignments/{aid}/skip", json={"reason": "x"}, headers=b_headers).status_code
        == 404
    )
    assert client.post(f"/api/assignments/{aid}/heartbeat", headers=b_headers).status_code == 404
    row = db.get(Assignment, aid)
    assert row is not None and row.status == "active"
    assert client.post(f"/api/assignments/{aid}/ranking", json=body).status_code == 401


def test_heartbeat_skip_and_late_submit_conflict(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    a_headers, b_headers = api_token(db, make_user(db)), api_token(db, make_user(db))
    db.commit()
    task = client.get(f"/api/projects/{project.id}/tasks/next", headers=a_headers).json()
    aid = task["assignment_id"]
    beat = client.post(f"/api/assignments/{aid}/heartbeat", headers=a_headers)
    assert beat.status_code == 200 and beat.json()["lease_expires_at"] >= task["lease_expires_at"]
    past = utcnow() - timedelta(minutes=1)
    db.execute(update(Slot).values(lease_expires_at=past))
    db.execute(update(Assignment).values(lease_expires_at=past))
    db.commit()
    other = client.get(f"/api/projects/{project.id}/tasks/next", headers=b_headers)
    assert other.status_code == 200
    late = client.post(
        f"/api/assignments/{aid}/ranking",
        json={"ranks": _ranks(task), "rationale": "keep me"},
        headers=a_headers,
    )
    assert late.status_code == 409
    assert late.json()["ranking"]["rationale"] == "keep me"
    skipped = client.post(
        f"/api/assignments/{other.json()['assignment_id']}/skip", json={"reason": "typo"}, headers=b_headers
    )
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"
    assert client.get(f"/api/projects/{project.id}/tasks/next", headers=b_headers).status_code == 204
