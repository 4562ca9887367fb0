"""In Chromium: an admin edits project settings as typed fields (a number, a checkbox, the flag list), gets a
cross-field error next to the field it is about with everything typed still there, fixes it and saves
(issue 14, item 1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from app.models import Project
from app.projects.service import settings_of
from tests.browser.conftest import browser_login
from tests.factories import make_project, make_user

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/settings_form.png"
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"


def _serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page (labels, contrast, ARIA), one line each."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => ['serious', 'critical'].includes(v.impact))
            .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))"""
    )
    return [str(item) for item in found]


def _stored(db: Session, project_id: int) -> Project:
    db.expire_all()
    project = db.get(Project, project_id)
    assert project is not None
    db.commit()  # end the read: on SQLite an open transaction holds the lock the server needs
    return project


def test_edit_settings_fix_an_error_and_save(page: Page, live_server: str, db: Session,
                                             console_errors: list[str]) -> None:
    admin = make_user(db, "admin")
    project = make_project(db, name="summaries", settings={"labeling": {"flags": ["too long", "misses the point"]}})
    db.commit()
    page.set_viewport_size({"width": 1440, "height": 900})
    browser_login(page, live_server, admin.email)
    page.goto(f"{live_server}/projects/{project.id}/edit")

    page.get_by_label("K min", exact=True).fill("9")
    page.get_by_label("K max", exact=True).fill("4")
    page.get_by_label("Temperature").fill("0.7")
    page.get_by_label("Automatic rounds").check()
    flags = page.locator('[data-key="labeling.flags"]')
    flags.get_by_role("button", name="Remove").first.click()  # "too long" goes
    flags.get_by_role("button", name="Add").click()
    page.keyboard.type("states what the source does not")  # the new row has the focus
    page.get_by_label("Flags, new item").first.fill("off topic")
    page.get_by_role("button", name="Save").click()

    # Refused: the message sits in the K max field's own box, everything typed is still there.
    message = page.locator('[data-key="k_max"] .field-error')
    expect(message).to_have_text("K max (4) must be at least K min (9)")
    expect(page.get_by_label("K max", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-errors")).to_contain_text("1 setting needs fixing; nothing was saved.")
    expect(page.get_by_label("K min", exact=True)).to_have_value("9")
    expect(page.get_by_label("Temperature")).to_have_value("0.7")
    expect(page.get_by_label("Automatic rounds")).to_be_checked()
    typed_flags = [v for v in flags.locator("input").evaluate_all("els => els.map(e => e.value)") if v]
    assert typed_flags == ["misses the point", "off topic", "states what the source does not"]
    assert "Value error" not in page.content()
    assert _stored(db, project.id).k_max == 9 and settings_of(_stored(db, project.id)).sampling.temperature == 1.0
    assert _serious_violations(page) == []
    page.locator('[data-key="k_max"]').scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT, full_page=True)
    page.locator("#g-labeling").screenshot(path=SCREENSHOT.replace(".png", "_labeling.png"))

    page.locator('a[href="#f-k-max"]').click()  # the summary's link leads to the field
    expect(page.get_by_label("K max", exact=True)).to_be_focused()
    page.get_by_label("K max", exact=True).fill("9")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(rf"/projects/{project.id}$"))

    saved = _stored(db, project.id)
    cfg = settings_of(saved)
    assert (saved.k_min, saved.k_max) == (9, 9)
    assert cfg.sampling.temperature == 0.7 and cfg.schedule.enabled
    assert cfg.labeling.flags == ["misses the point", "off topic", "states what the source does not"]
    # The refused save itself is logged as a 422; anything else (a CSP violation, a script error) is a failure.
    assert [e for e in console_errors if "status of 422" not in e] == []


def test_a_new_summarisation_project_starts_from_its_own_flags(page: Page, live_server: str, db: Session,
                                                              console_errors: list[str]) -> None:
    admin = make_user(db, "admin")
    db.commit()
    page.set_viewport_size({"width": 1440, "height": 900})
    browser_login(page, live_server, admin.email)
    page.goto(f"{live_server}/projects/new")
    page.get_by_role("link", name="Summarisation").click()
    page.wait_for_url(re.compile(r"kind=summarisation$"))
    flags = page.locator('[data-key="labeling.flags"] input')
    shown = [v for v in flags.evaluate_all("els => els.map(e => e.value)") if v]
    assert "misses a key point" in shown and "inappropriate for a customer assistant" not in shown
    expect(page.get_by_label("Layout")).to_have_value("side-by-side")
    page.screenshot(path=SCREENSHOT.replace(".png", "_new.png"))
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the groups fold to one column
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.get_by_label("Name", exact=True).fill("news summaries")
    page.get_by_label("Gold rate").fill("0.0002")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator('[data-key="quality.gold_rate"] .field-error')).to_have_text(
        "Gold rate must be 0 (no gold) or at least 0.001")
    expect(page.get_by_label("Name", exact=True)).to_have_value("news summaries")
    expect(page.locator('nav.kinds a[aria-current="true"]')).to_have_text("Summarisation")
    page.get_by_label("Gold rate").fill("0.05")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url(re.compile(r"/projects/\d+$"))
    project_id = int(page.url.rsplit("/", 1)[1])
    cfg = settings_of(_stored(db, project_id))
    assert cfg.quality.gold_rate == 0.05 and cfg.labeling.layout == "side-by-side"
    assert "inappropriate for a customer assistant" not in cfg.labeling.flags
    assert [e for e in console_errors if "status of 422" not in e] == []
