"""Accounts on both dialects: changing one's password, invite and reset links (one-time, expiring), API tokens
listed, scoped, expiring and revoked — through the real pages and API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import AccountLink, ApiToken, User, utcnow
from tests.conftest import TEST_SECRET
from tests.factories import PASSWORD, api_token, csrf_from, login, make_user

NEW_PASSWORD = "a brand new passphrase"


def _link_path(html: str, kind: str) -> str:
    match = re.search(rf'id="issued-link">[^<]*?(/{kind}/pfa_[A-Za-z0-9_-]+)<', html)
    assert match, "the page shows no issued link"
    return match.group(1)


def _submit_link(client: TestClient, path: str, **fields: str) -> object:
    token = csrf_from(client.get(path).text)
    return client.post(path, data={"csrf_token": token, **fields})


def test_change_own_password_ends_sessions_and_needs_the_current_one(client: TestClient, db: Session) -> None:
    user = make_user(db)
    db.commit()
    other_device = TestClient(client.app)
    login(other_device, user.email)
    token = login(client, user.email)
    wrong = client.post("/account/password", data={"csrf_token": token, "current_password": "not it at all",
                                                   "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert wrong.status_code == 400 and "not your current password" in wrong.text
    mismatch = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                      "new_password": NEW_PASSWORD, "confirm_password": "typo"})
    assert mismatch.status_code == 400 and "the two new passwords differ" in mismatch.text
    short = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                   "new_password": "short", "confirm_password": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.text
    done = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                  "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert done.status_code == 200 and "every session ended" in done.text
    assert other_device.get("/", follow_redirects=False).status_code == 303  # signed out everywhere
    fresh = TestClient(client.app)
    login(fresh, user.email, NEW_PASSWORD)


def test_invite_link_creates_the_account_once(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    db.commit()
    token = login(client, admin.email)
    page = client.post("/admin/users/invite", data={"csrf_token": token, "email": "New.Person@Example.org",
                                                    "role": "annotator"})
    assert page.status_code == 200 and "new.person@example.org" in page.text
    path = _link_path(page.text, "invite")
    assert db.scalar(select(User).where(User.email == "new.person@example.org")) is None  # no account yet
    db.commit()  # end the test's read: on SQLite it would hold up the app's writes
    stranger = TestClient(client.app)
    assert "invited as new.person@example.org (annotator)" in stranger.get(path).text
    bad = _submit_link(stranger, path, display_name="New", new_password="short", confirm_password="short")
    assert bad.status_code == 400 and "at least 10 characters" in bad.text  # type: ignore[attr-defined]
    ok = _submit_link(stranger, path, display_name="New Person", new_password=NEW_PASSWORD,
                      confirm_password=NEW_PASSWORD)
    assert ok.status_code == 200 and "your account new.person@example.org is ready" in ok.text  # type: ignore[attr-defined]
    login(TestClient(client.app), "new.person@example.org", NEW_PASSWORD)
    again = stranger.get(path)
    assert again.status_code == 404 and "expired or was already used" in again.text
    duplicate = client.post("/admin/users/invite", data={"csrf_token": token, "email": "new.person@example.org"})
    assert duplicate.status_code == 400 and "already has an account" in duplicate.text


def test_reset_link_is_one_time_and_expires(client: TestClient, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db)
    db.commit()
    token = login(client, admin.email)
    path = _link_path(client.post(f"/admin/users/{user.id}/reset-link", data={"csrf_token": token}).text, "reset")
    stranger = TestClient(client.app)
    done = _submit_link(stranger, path, new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    assert done.status_code == 200 and f"The password of {user.email} is set" in done.text  # type: ignore[attr-defined]
    login(TestClient(client.app), user.email, NEW_PASSWORD)
    assert stranger.get(path).status_code == 404
    # An expired link answers exactly like a used or unknown one.
    late = _link_path(client.post(f"/admin/users/{user.id}/reset-link", data={"csrf_token": token}).text, "reset")
    db.execute(update(AccountLink).where(AccountLink.used_at.is_(None)).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    expired, unknown = stranger.get(late), stranger.get("/reset/pfa_" + "x" * 43)
    assert expired.status_code == unknown.status_code == 404
    assert "expired or was already used" in expired.text and "expired or was already used" in unknown.text


def test_withdrawn_link_no_longer_works(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    db.commit()
    token = login(client, admin.email)
    path = _link_path(client.post("/admin/users/invite", data={"csrf_token": token, "email": "w@example.org"}).text,
                      "invite")
    link_id = db.scalar(select(AccountLink.id).where(AccountLink.email == "w@example.org"))
    db.commit()
    assert client.post(f"/admin/users/links/{link_id}/withdraw", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    assert TestClient(client.app).get(path).status_code == 404


def test_invite_for_something_not_an_email_is_a_400(client: TestClient, db: Session) -> None:
    """Found by tests/web/test_api_fuzz.py: an address without '@' was an unhandled AuthError (500)."""
    admin = make_user(db, "admin")
    db.commit()
    token = login(client, admin.email)
    for email in ("0" * 300, "@example.org"):
        page = client.post("/admin/users/invite", data={"csrf_token": token, "email": email})
        assert page.status_code == 400 and "not an e-mail address" in page.text


def test_annotators_cannot_issue_links(client: TestClient, db: Session) -> None:
    annotator = make_user(db)
    db.commit()
    token = login(client, annotator.email)
    assert client.post("/admin/users/invite", data={"csrf_token": token, "email": "x@example.org"},
                       follow_redirects=False).status_code == 403
    assert client.post(f"/admin/users/{annotator.id}/reset-link", data={"csrf_token": token},
                       follow_redirects=False).status_code == 403
    assert db.scalars(select(AccountLink)).first() is None


def test_tokens_listed_scoped_expiring_and_revoked(client: TestClient, db: Session) -> None:
    admin, other = make_user(db, "admin"), make_user(db)
    db.commit()
    full = api_token(db, admin)
    db.commit()
    created = client.post("/api/tokens", json={"name": "reader", "scope": "read", "days": 30}, headers=full)
    assert created.status_code == 201, created.text
    reader = {"Authorization": f"Bearer {created.json()['token']}"}
    assert created.json()["scope"] == "read" and created.json()["expires_at"] is not None
    assert client.get("/api/projects", headers=reader).status_code == 200
    refused = client.post("/api/projects", json={"name": "nope"}, headers=reader)
    assert refused.status_code == 403 and "read-only" in refused.text
    listed = client.get("/api/tokens", headers=full).json()
    assert [t["name"] for t in listed] == ["reader", ""] and all("token" not in t for t in listed)
    assert listed[1]["last_used_at"] is not None  # the full token was just used
    # Someone else's token does not exist for an annotator; the owner revokes it; a revoked token is refused.
    other_headers = api_token(db, other)
    db.commit()
    assert client.delete(f"/api/tokens/{created.json()['id']}", headers=other_headers).status_code == 404
    assert client.delete(f"/api/tokens/{created.json()['id']}", headers=full).json()["revoked_at"] is not None
    assert client.get("/api/projects", headers=reader).status_code == 401
    # An expired token is refused like a revoked one.
    db.execute(update(ApiToken).where(ApiToken.user_id == other.id).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert client.get("/api/projects", headers=other_headers).status_code == 401


def test_account_page_creates_and_revokes_tokens(client: TestClient, db: Session) -> None:
    user = make_user(db)
    db.commit()
    token = login(client, user.email)
    page = client.post("/account/tokens", data={"csrf_token": token, "name": "laptop", "scope": "full", "days": "7"})
    secret = re.search(r'class="secret">(pfl_[A-Za-z0-9_-]+)<', page.text)
    assert page.status_code == 200 and secret and "laptop" in page.text
    assert client.get("/account").text.count(secret.group(1)) == 0  # shown once only
    token_id = db.scalar(select(ApiToken.id).where(ApiToken.name == "laptop"))
    db.commit()
    assert client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    anonymous = TestClient(client.app)
    assert anonymous.get("/api/projects", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code == 401
    bad = client.post("/account/tokens", data={"csrf_token": token, "scope": "root"})
    assert bad.status_code == 400 and "one of full, read" in bad.text


def test_cli_invites_lists_and_revokes(db: Session, db_url: str) -> None:
    admin, user = make_user(db, "admin"), make_user(db)
    db.commit()
    env = dict(os.environ, PREFLOOP_DATABASE_URL=db_url, PREFLOOP_ENV="test", PREFLOOP_SECRET_KEY=TEST_SECRET)

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    invite = json.loads(run("links", "invite", "cli.person@example.org", "--json"))
    assert re.search(r"/invite/pfa_[A-Za-z0-9_-]{40,}$", invite["url"])
    created = json.loads(run("tokens", "create", user.email, "--scope", "read", "--days", "3", "--json"))
    listed = json.loads(run("tokens", "list", user.email, "--json"))
    assert [t["scope"] for t in listed] == ["read"] and listed[0]["expires_at"]
    run("tokens", "revoke", str(listed[0]["id"]))
    assert json.loads(run("tokens", "list", user.email, "--json"))[0]["revoked_at"]
    assert created["token"].startswith("pfl_") and admin.id


def test_end_sessions_can_also_revoke_tokens(client: TestClient, db: Session) -> None:
    admin, user = make_user(db, "admin"), make_user(db)
    db.commit()
    headers = api_token(db, user)
    db.commit()
    token = login(client, admin.email)
    client.post(f"/admin/users/{user.id}/revoke-sessions", data={"csrf_token": token})
    assert client.get("/api/projects", headers=headers).status_code == 200  # sessions only
    client.post(f"/admin/users/{user.id}/revoke-sessions", data={"csrf_token": token, "revoke_tokens": "true"})
    assert client.get("/api/projects", headers=headers).status_code == 401
    yourself = client.post(f"/admin/users/{admin.id}/active", data={"csrf_token": token, "active": "false"})
    assert yourself.status_code == 400 and "cannot deactivate yourself" in yourself.text
