"""URLs people type by hand lead somewhere useful."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import login, make_project, make_user


def test_projects_url_leads_to_the_project_list(client: TestClient, db: Session) -> None:
    annotator = make_user(db)
    project = make_project(db, name="Listed project")
    db.commit()
    login(client, annotator.email)
    response = client.get("/projects", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/"
    assert project.name in client.get("/projects").text
