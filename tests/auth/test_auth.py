"""Sessions, CSRF, roles, throttling and security headers (RELIABILITY §Untrusted content 4, §Authorization)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.settings import Settings, SettingsError
from tests.conftest import TEST_SECRET
from tests.factories import PASSWORD, api_token, csrf_from, login, make_user


def test_login_rotates_session_and_logout_ends_it(client: TestClient, db: Session) -> None:
    user = make_user(db, "admin")
    db.commit()
    login(client, user.email)
    first = client.cookies.get("prefloop_session")
    assert first
    assert client.get("/", follow_redirects=False).status_code == 200
    token = csrf_from(client.get("/").text)
    login(client, user.email)
    assert client.cookies.get("prefloop_session") != first
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    replay = TestClient(client.app, cookies={"prefloop_session": first})
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_admin_revocation_ends_sessions(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    annotator = make_user(db)
    db.commit()
    annotator_client = TestClient(client.app)
    login(annotator_client, annotator.email)
    assert annotator_client.get("/", follow_redirects=False).status_code == 200
    token = login(client, admin.email)
    response = client.post(f"/admin/users/{annotator.id}/revoke-sessions", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert annotator_client.get("/", follow_redirects=False).status_code == 303


def test_generic_failure_and_throttling(client: TestClient, db: Session) -> None:
    user = make_user(db)
    db.commit()
    token = csrf_from(client.get("/login").text)
    unknown = client.post("/login", data={"email": "nobody@example.org", "password": "x" * 12, "csrf_token": token})
    wrong = client.post("/login", data={"email": user.email, "password": "x" * 12, "csrf_token": token})
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong e-mail or password" in unknown.text and "Wrong e-mail or password" in wrong.text
    for _ in range(5):
        client.post("/login", data={"email": user.email, "password": "y" * 12, "csrf_token": token})
    locked = client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert locked.status_code == 429, "the right password must not work while the account is throttled"
    assert int(locked.headers["retry-after"]) > 60 and "Too many sign-in attempts" in locked.text


def test_csrf_required_on_forms_and_json(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    db.commit()
    login(client, admin.email)
    no_token = client.post("/projects", data={"name": "x"}, follow_redirects=False)
    wrong_token = client.post("/projects", data={"name": "x", "csrf_token": "0" * 64}, follow_redirects=False)
    as_text = client.post(
        "/api/projects", content='{"name": "x"}', headers={"content-type": "text/plain"}, follow_redirects=False
    )
    assert no_token.status_code == wrong_token.status_code == as_text.status_code == 403
    token = csrf_from(client.get("/").text)
    ok = client.post("/api/projects", json={"name": "x"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 201


def test_login_form_needs_csrf(client: TestClient, db: Session) -> None:
    user = make_user(db)
    db.commit()
    response = client.post("/login", data={"email": user.email, "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403


def test_roles_enforced(client: TestClient, db: Session) -> None:
    annotator = make_user(db)
    db.commit()
    headers = api_token(db, annotator)
    db.commit()
    assert client.post("/api/projects", json={"name": "p"}, headers=headers).status_code == 403
    login(client, annotator.email)
    assert client.get("/admin/users", follow_redirects=False).status_code == 403
    assert client.get("/projects/new", follow_redirects=False).status_code == 403
    anonymous = TestClient(client.app)
    assert anonymous.get("/api/projects").status_code == 401
    assert anonymous.get("/admin/users", follow_redirects=False).status_code == 303


def test_bearer_token_and_bad_token(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    db.commit()
    headers = api_token(db, admin)
    db.commit()
    assert client.post("/api/projects", json={"name": "via token"}, headers=headers).status_code == 201
    assert client.get("/api/projects", headers={"Authorization": "Bearer pfl_wrong"}).status_code == 401


def test_security_headers_and_cookie_flags(client: TestClient, db: Session) -> None:
    user = make_user(db)
    db.commit()
    page = client.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    token = csrf_from(page.text)
    response = client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_no_unsafe_secret_outside_dev(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for secret in ("", "changeme", "short", "a" * 40):
        with pytest.raises(SettingsError):
            Settings(env="prod", secret_key=secret, data_dir=tmp_path).validate_for_serving()
    Settings(env="prod", secret_key=TEST_SECRET, data_dir=tmp_path).validate_for_serving()


def test_open_redirect_refused(client: TestClient, db: Session) -> None:
    user = make_user(db)
    db.commit()
    token = csrf_from(client.get("/login").text)
    response = client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_user_fields_escaped(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    db.commit()
    token = login(client, admin.email)
    client.post(
        "/admin/users",
        data={"email": "x@example.org", "display_name": '<script>alert(1)</script>"><img src=x onerror=alert(2)>',
              "csrf_token": token},
    )
    page = client.get("/admin/users").text
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page
