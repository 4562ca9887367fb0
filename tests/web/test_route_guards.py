"""Every route, enumerated from the app itself: unsafe methods refuse a browser session without a CSRF token,
signed-out callers get nothing, and annotators get no admin page (RELIABILITY 11-13)."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import login, make_project, make_prompt, make_user

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/livez"), ("GET", "/readyz"),
          ("GET", "/static-gen/highlight.css"), ("POST", "/logout"),
          # The one-time invite and reset links: whoever holds the secret in the path (a wrong one gets 404).
          ("GET", "/invite/1"), ("GET", "/reset/1")}
# Open in dev and test (these tests), admins only in production (tests/health/test_metrics_access.py).
OPERATIONAL = {("GET", "/metrics"), ("GET", "/openapi.json")}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """(method, path with every parameter set to 1) for every HTTP route, through included routers."""
    found = []
    for context in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            path = re.sub(r"\{[^}]+\}", "1", context.path)
            found.extend((method, path) for method in sorted(route.methods or ()))
    assert len(found) > 50, "route enumeration found too few routes"
    return found


def test_unsafe_routes_need_csrf_with_a_session(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    project = make_project(db)
    make_prompt(db, project)
    db.commit()
    login(client, admin.email)
    checked = 0
    for method, path in _routes(client):
        if method not in UNSAFE or (method, path) in PUBLIC:
            continue
        response = client.request(method, path, data={"x": "1"}, follow_redirects=False)
        assert response.status_code == 403, f"{method} {path} answered {response.status_code} without a CSRF token"
        checked += 1
    assert checked >= 20


def test_signed_out_callers_get_nothing(client: TestClient, db: Session) -> None:
    project = make_project(db)
    make_prompt(db, project)
    db.commit()
    for method, path in _routes(client):
        if (method, path) in PUBLIC | OPERATIONAL or (method == "GET" and path == "/"):
            continue
        response = client.request(method, path, follow_redirects=False)
        if path.startswith("/api/"):
            assert response.status_code in (401, 403), f"{method} {path}: {response.status_code}"
        else:
            assert response.status_code in (303, 403), f"{method} {path}: {response.status_code}"
            if response.status_code == 303:
                assert response.headers["location"].startswith("/login")


def test_annotators_get_no_admin_pages(client: TestClient, db: Session) -> None:
    annotator = make_user(db)
    project = make_project(db)
    make_prompt(db, project)
    db.commit()
    login(client, annotator.email)
    admin_prefixes = ("/admin/", "/api/jobs", "/jobs/")
    admin_suffixes = ("/progress", "/import", "/export", "/export/download", "/quality", "/models", "/jobs", "/edit")
    for method, path in _routes(client):
        if method != "GET":
            continue
        if path.startswith(admin_prefixes) or path.startswith("/projects/1/data") or (
                path.startswith("/projects/1") and path.endswith(admin_suffixes)):
            response = client.get(path, follow_redirects=False)
            assert response.status_code in (403, 404), f"annotator reached {path}: {response.status_code}"


def test_openapi_is_published(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/projects" in spec["paths"] and "/api/projects/{project_id}/tasks/next" in spec["paths"]
