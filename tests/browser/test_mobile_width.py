"""At a phone's 390×844 viewport the admin pages fit the screen: nothing scrolls the whole page sideways
(issue 13, point 7); a wide table scrolls inside its own box instead."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page
from sqlalchemy.orm import Session

from tests.browser.conftest import browser_login
from tests.factories import make_project, make_user

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def _page_width(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_admin_pages_fit_a_390px_screen(page: Page, live_server: str, db: Session) -> None:
    admin = make_user(db, "admin", email="a.very.long.administrator.address@example.org")
    admin.display_name = "Administrator With A Long Name"
    for i in range(3):
        u = make_user(db, email=f"annotator-number-{i}@labelling-team.example.com")
        u.display_name = f"Annotator Number {i}"
    make_project(db, name="A project with a rather long name for a phone")
    db.commit()

    page.set_viewport_size(PHONE)
    browser_login(page, live_server, admin.email)
    for path in ("/admin/users", "/"):
        page.goto(f"{live_server}{path}")
        assert _page_width(page) <= PHONE["width"], f"{path} is {_page_width(page)} px wide at 390 px"

    # The users table is all still there: it scrolls inside its own box, and its buttons stay reachable.
    page.goto(f"{live_server}/admin/users")
    box = page.locator(".table-scroll")
    assert box.evaluate("el => el.scrollWidth > el.clientWidth")
    buttons = page.get_by_role("button", name="End sessions")
    assert buttons.count() == 4
    buttons.last.scroll_into_view_if_needed()
    assert box.evaluate("el => el.scrollLeft") > 0
    assert _page_width(page) <= PHONE["width"]
    assert buttons.last.evaluate("el => el.getBoundingClientRect().right") <= PHONE["width"]
