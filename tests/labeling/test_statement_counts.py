"""How many SQL statements a next-task and a K=9 submit cost, counted on the engine: a guard against the
hot path quietly growing (issue 19). The bounds are today's counts; lower them when the path gets leaner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from tests.factories import api_token, make_user
from tests.labeling.helpers import seeded_project

NEXT_TASK_STATEMENTS = 11  # SQLite counts its BEGIN IMMEDIATE; Postgres needs 10
SUBMIT_STATEMENTS = 13  # Postgres: 12


@contextmanager
def _counting(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_next_task_and_submit_stay_within_their_statement_budget(client: TestClient, db: Session,
                                                                  clean_engine: Engine) -> None:
    project = seeded_project(db, prompts=3, k=9, k_max=9)
    headers = api_token(db, make_user(db))
    db.commit()
    client.get("/api/projects", headers=headers)  # the token's last use is written once a minute: not counted
    with _counting(clean_engine) as claimed:
        task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()
    body = {"ranks": {str(c["id"]): i + 1 for i, c in enumerate(task["completions"])}, "rationale": "",
            "flags": {}, "likert": {}, "not_rankable": False}
    with _counting(clean_engine) as submitted:
        done = client.post(f"/api/assignments/{task['assignment_id']}/ranking", json=body, headers=headers)
    assert done.status_code == 200 and done.json()["comparisons"] == 36
    assert len(claimed) <= NEXT_TASK_STATEMENTS, claimed
    assert len(submitted) <= SUBMIT_STATEMENTS, submitted
    # The 36 comparisons go in as one multi-row INSERT, not one statement each.
    assert submitted.count("INSERT") <= 4, submitted
