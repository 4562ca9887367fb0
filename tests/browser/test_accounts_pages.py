"""In Chromium: an admin invites by link, the invitee creates their account on it and signs in; a reset link
sets a new password; a token made on the account page works until it is revoked (issue 14, accounts)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session

from tests.browser.conftest import browser_login
from tests.factories import make_user

pytestmark = pytest.mark.browser

NEW_PASSWORD = "correct horse battery"


def _issued_path(page: Page) -> str:
    """The path of the one-time link the page shows (its host is PREFLOOP_BASE_URL's, not the test server's)."""
    link = page.locator("#issued-link").inner_text().strip()
    path = urlsplit(link).path
    assert path.startswith(("/invite/pfa_", "/reset/pfa_")), link
    return path


def test_invite_reset_and_tokens_in_the_browser(page: Page, browser: Browser, live_server: str,
                                                db: Session) -> None:
    admin, someone = make_user(db, "admin"), make_user(db, email="forgetful@example.org")
    db.commit()
    browser_login(page, live_server, admin.email)
    page.goto(f"{live_server}/admin/users")
    page.get_by_label("E-mail").first.fill("invitee@example.org")
    page.get_by_role("button", name="Create invite link").click()
    invite = live_server + _issued_path(page)
    page.get_by_role("button", name=f"Password-reset link for {someone.email}").click()
    reset = live_server + _issued_path(page)

    guest = browser.new_context()
    try:
        g = guest.new_page()
        g.goto(invite)
        assert "invited as invitee@example.org (annotator)" in g.content()
        g.get_by_label("Your name").fill("In Vitee")
        g.get_by_label("Password (at least 10 characters)").fill(NEW_PASSWORD)
        g.get_by_label("Password again").fill(NEW_PASSWORD)
        g.get_by_role("button", name="Create account").click()
        assert "your account invitee@example.org is ready" in g.content()
        browser_login(g, live_server, "invitee@example.org", NEW_PASSWORD)
        # The account page: a read-only token, shown once, that reads but cannot write, then is revoked.
        g.goto(f"{live_server}/account")
        g.get_by_label("Name").fill("script")
        g.get_by_label("Scope").select_option("read")
        g.get_by_role("button", name="Create token").click()
        secret = g.locator("code.secret").inner_text().strip()
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{live_server}/api/projects", headers=headers).status_code == 200
        assert httpx.post(f"{live_server}/api/projects", headers=headers, json={"name": "x"}).status_code == 403
        g.get_by_role("button", name="Revoke token script").click()
        g.wait_for_url(f"{live_server}/account")
        assert "revoked" in g.locator("table").inner_text()
        assert httpx.get(f"{live_server}/api/projects", headers=headers).status_code == 401

        other = guest.new_page()
        other.goto(reset)
        other.get_by_label("Password (at least 10 characters)").fill(NEW_PASSWORD)
        other.get_by_label("Password again").fill(NEW_PASSWORD)
        other.get_by_role("button", name="Set password").click()
        assert f"The password of {someone.email} is set" in other.content()
        other.goto(reset)
        assert "expired or was already used" in other.content()
    finally:
        guest.close()
    fresh = browser.new_context()
    try:
        browser_login(fresh.new_page(), live_server, someone.email, NEW_PASSWORD)
    finally:
        fresh.close()
