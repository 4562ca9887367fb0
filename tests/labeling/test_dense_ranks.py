"""Ranks with gaps are stored dense: {1, 3, 3} for three answers is {1, 2, 2} (issue 16, Low)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.labeling.submission import dense_ranks
from app.models import Ranking
from tests.factories import api_token, make_user
from tests.labeling.helpers import seeded_project


def test_dense_ranks_keep_the_order() -> None:
    assert dense_ranks({10: 1, 11: 3, 12: 3}) == {10: 1, 11: 2, 12: 2}
    assert dense_ranks({1: 4, 2: 2, 3: 4, 4: 1}) == {1: 3, 2: 2, 3: 3, 4: 1}
    assert dense_ranks({1: 1, 2: 2}) == {1: 1, 2: 2}


def test_gapped_ranks_are_stored_dense(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    headers = api_token(db, make_user(db))
    db.commit()
    task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()
    a, b, c = (str(item["id"]) for item in task["completions"])
    response = client.post(f"/api/assignments/{task['assignment_id']}/ranking",
                           json={"ranks": {a: 1, b: 3, c: 3}}, headers=headers)
    assert response.status_code == 200, response.text
    stored = db.scalars(select(Ranking)).one()
    assert stored.ranks == {a: 1, b: 2, c: 2}
