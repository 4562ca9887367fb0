"""Plain factory functions that arrange test data through the real services (no ORM shortcuts for logic)."""

from __future__ import annotations

import itertools
import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.models import Completion, Project, Prompt, User
from app.projects import service as projects
from app.projects.schemas import ProjectCreate

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def make_user(db: Session, role: str = "annotator", email: str | None = None, password: str = PASSWORD) -> User:
    email = email or f"{role}{next(_counter)}@example.org"
    return auth.create_user(db, email, role, password=password).user


def make_project(db: Session, name: str | None = None, **fields: object) -> Project:
    data = ProjectCreate(name=name or f"project {next(_counter)}", **fields)  # type: ignore[arg-type]
    return projects.create(db, data, None)


def make_prompt(db: Session, project: Project, n_completions: int = 4, text: str | None = None) -> Prompt:
    """A prompt with `n_completions` uploaded completions (direct rows: this arranges data, it tests nothing)."""
    n = next(_counter)
    prompt = Prompt(
        project_id=project.id, external_id=f"p{n}", text=text or f"Prompt number {n}?", content_hash=f"{n:064d}"
    )
    db.add(prompt)
    db.flush()
    for i in range(n_completions):
        db.add(Completion(prompt_id=prompt.id, position=i, text=f"Answer {i} to prompt {n}", model_name=f"m{i}"))
    db.flush()
    return prompt


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "page carries no CSRF token"
    return match.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the real login form; returns the CSRF token for later unsafe requests."""
    page = client.get("/login")
    token = csrf_from(page.text)
    response = client.post(
        "/login", data={"email": email, "password": password, "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/").text)


def api_token(db: Session, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.create_api_token(db, user)}"}
