"""Project membership on SQLite and Postgres: a members-only project is invisible (404) to a non-member
annotator on every route with a {project_id}, listed and claimable for its members, always open to admins;
projects whose access is "all" behave as before; admins manage members by page, API and CLI."""

from __future__ import annotations

import json
import re

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import cli
from app.labeling.slots import ensure_slots
from app.members import service as members
from app.models import Project, User
from tests.factories import api_token, csrf_from, login, make_project, make_prompt, make_user


def _closed_project(db: Session, name: str = "closed") -> Project:
    return make_project(db, name=name, settings={"labeling": {"access": "members"}})


def _project_routes(client: TestClient, project_id: int) -> list[tuple[str, str]]:
    """(method, path) of every route with a {project_id}, other parameters set to 1."""
    found = []
    for context in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if isinstance(route, APIRoute) and "{project_id}" in context.path:
            path = re.sub(r"\{[^}]+\}", "1", context.path.replace("{project_id}", str(project_id)))
            found.extend((m, path) for m in sorted(route.methods or ()))
    assert len(found) > 30, "too few project routes found"
    return found


def test_a_non_member_gets_404_on_every_project_route(client: TestClient, db: Session) -> None:
    closed = _closed_project(db)
    make_prompt(db, closed)
    outsider = make_user(db)
    headers = api_token(db, outsider)
    db.commit()
    for method, path in _project_routes(client, closed.id):
        response = client.request(method, path, headers=headers, follow_redirects=False)
        assert response.status_code == 404, f"{method} {path}: {response.status_code}"
    login(client, outsider.email)
    for method, path in _project_routes(client, closed.id):
        if method == "GET" and not path.startswith("/api/"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 404, f"page {path}: {response.status_code}"
            assert "closed" not in response.text  # the project's name never shows


def test_members_and_admins_see_and_claim_a_closed_project(client: TestClient, db: Session) -> None:
    closed = _closed_project(db)
    open_project = make_project(db, name="open to all")
    ensure_slots(db, closed, [make_prompt(db, closed).id])
    ensure_slots(db, open_project, [make_prompt(db, open_project).id, make_prompt(db, open_project).id])
    member, outsider, admin = make_user(db), make_user(db), make_user(db, "admin")
    members.add(db, closed, member.email, admin)
    tokens = {u.email: api_token(db, u) for u in (member, outsider, admin)}
    db.commit()

    def names(user: User) -> set[str]:
        return {p["name"] for p in client.get("/api/projects", headers=tokens[user.email]).json()}

    assert names(member) == {"closed", "open to all"}
    assert names(outsider) == {"open to all"}
    assert {"closed", "open to all"} <= names(admin)
    for user, status in ((outsider, 404), (member, 200)):
        response = client.get(f"/api/projects/{closed.id}/tasks/next", headers=tokens[user.email])
        assert response.status_code == status, (user.email, response.text)
    assert client.get(f"/api/projects/{closed.id}", headers=tokens[admin.email]).status_code == 200
    # The open project is claimable by anyone, as before.
    assert client.get(f"/api/projects/{open_project.id}/tasks/next", headers=tokens[outsider.email]).status_code == 200

    login(client, outsider.email)
    home = client.get("/")
    assert "open to all" in home.text and ">closed<" not in home.text

    # Taking the member off closes the door again.
    members.remove(db, closed, member.email)
    db.commit()
    assert client.get(f"/api/projects/{closed.id}", headers=tokens[member.email]).status_code == 404


def test_admins_manage_members_by_page_api_and_cli(client: TestClient, db: Session,
                                                   cli_env: dict[str, str]) -> None:
    closed = _closed_project(db)
    admin, annotator, other = make_user(db, "admin"), make_user(db), make_user(db)
    headers, annotator_headers = api_token(db, admin), api_token(db, annotator)
    db.commit()

    created = client.post(f"/api/projects/{closed.id}/members", json={"email": annotator.email.upper()},
                          headers=headers)
    assert created.status_code == 201 and created.json()["created"] is True
    again = client.post(f"/api/projects/{closed.id}/members", json={"email": annotator.email}, headers=headers)
    assert again.status_code == 201 and again.json()["created"] is False
    unknown = client.post(f"/api/projects/{closed.id}/members", json={"email": "nobody@example.org"}, headers=headers)
    assert unknown.status_code == 404 and "nobody@example.org" in unknown.text
    listed = client.get(f"/api/projects/{closed.id}/members", headers=headers).json()
    assert listed["access"] == "members" and [m["email"] for m in listed["members"]] == [annotator.email]
    assert client.get(f"/api/projects/{closed.id}/members", headers=annotator_headers).status_code == 403

    csrf = login(client, admin.email)
    page = client.get(f"/projects/{closed.id}/members")
    assert page.status_code == 200 and annotator.email in page.text
    refused = client.post(f"/projects/{closed.id}/members", data={"email": admin.email, "csrf_token": csrf_from(page.text)})
    assert refused.status_code == 400 and "sees every project" in refused.text and admin.email in refused.text
    added = client.post(f"/projects/{closed.id}/members", data={"email": other.email, "csrf_token": csrf})
    assert added.status_code == 200 and f"{other.email} is now a member" in added.text
    removed = client.post(f"/projects/{closed.id}/members/remove", data={"email": other.email, "csrf_token": csrf},
                          follow_redirects=False)
    assert removed.status_code == 303
    gone = client.delete(f"/api/projects/{closed.id}/members/{annotator.id}", headers=headers)
    assert gone.json() == {"user_id": annotator.id, "removed": True}

    runner = CliRunner()
    done = runner.invoke(cli, ["members", "add", str(closed.id), other.email, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["created"] is True
    shown = runner.invoke(cli, ["members", "list", str(closed.id), "--json"])
    assert [m["email"] for m in json.loads(shown.stdout)["members"]] == [other.email]
    missing = runner.invoke(cli, ["members", "add", str(closed.id), "ghost@example.org"])
    assert missing.exit_code != 0 and "ghost@example.org" in missing.output
    out = runner.invoke(cli, ["members", "remove", str(closed.id), other.email])
    assert out.exit_code == 0 and "removed from" in out.output
