"""How many SQL statements a next-task and a K=9 submit cost, counted on the engine: a guard against the
hot path quietly growing (issue 19). The bounds are today's counts; lower them when the path gets leaner.
They were 10 (next task) and 12 (submit) on Postgres before the project read, the double assignment load,
the savepoint pair and the count of just-inserted comparisons were folded away."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from tests.factories import api_token, make_user
from tests.labeling.helpers import seeded_project

# Postgres: the token, the membership guard's project read (app.members.access, on every {project_id}
# route), the project read with the annotator lock, the live check that also expires stale leases, the
# claim, the prompt with its candidates, the new assignment. SQLite adds its BEGIN IMMEDIATE.
NEXT_TASK_STATEMENTS = {"postgresql": 7, "sqlite": 8}
# The token, the assignment locked with its project, the slot, the ranking, its comparisons (one INSERT),
# the assignment's status.
SUBMIT_STATEMENTS = {"postgresql": 6, "sqlite": 7}
# A retry: the token, the assignment with its project, the saved ranking, its comparison count.
REPLAY_STATEMENTS = {"postgresql": 4, "sqlite": 5}


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
                                                                  clean_engine: Engine, dialect: str) -> None:
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
    with _counting(clean_engine) as replayed:
        again = client.post(f"/api/assignments/{task['assignment_id']}/ranking", json=body, headers=headers)
    assert len(task["completions"]) == 9
    assert done.status_code == 200 and done.json()["comparisons"] == 36
    assert again.status_code == 200 and again.json() == done.json()
    assert len(claimed) <= NEXT_TASK_STATEMENTS[dialect], claimed
    assert len(submitted) <= SUBMIT_STATEMENTS[dialect], submitted
    assert len(replayed) <= REPLAY_STATEMENTS[dialect], replayed
    # The 36 comparisons go in as one multi-row INSERT, not one statement each; no savepoint, no re-count.
    assert submitted.count("INSERT") == 2, submitted
    assert "SAVEPOINT" not in submitted and "RELEASE" not in submitted, submitted


def test_reloading_the_next_task_reads_it_in_few_statements(client: TestClient, db: Session,
                                                            clean_engine: Engine, dialect: str) -> None:
    """A reload shows the same task: token, the membership guard, project with the lock, the live check,
    the task's texts."""
    project = seeded_project(db, prompts=2, k=4)
    headers = api_token(db, make_user(db))
    db.commit()
    client.get("/api/projects", headers=headers)
    first = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()
    with _counting(clean_engine) as reloaded:
        again = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()
    assert again == first
    assert len(reloaded) <= {"postgresql": 5, "sqlite": 6}[dialect], reloaded
