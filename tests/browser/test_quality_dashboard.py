"""The quality dashboard in headless Chromium: real rankings, three SVG plots, the annotator table, the
consensus browser (paged through htmx), a CSV link, the recompute action, and no console errors (CSP)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ModelVersion, Ranking
from tests.browser.conftest import browser_login
from tests.factories import make_user
from tests.quality.db_helpers import by_id, by_id_reversed, rank_all, seeded_project

pytestmark = pytest.mark.browser


def test_dashboard_renders_real_data_without_console_errors(
    page: Page, live_server: str, db: Session, console_errors: list[str]
) -> None:
    project = seeded_project(db, prompts=12, k=3, n=3)
    db.add(ModelVersion(project_id=project.id, kind="reward", name="rm-v1", base_model="tiny", status="active",
                        metrics={"heldout_accuracy": 0.68}))
    people = [make_user(db) for _ in range(3)]
    for i, u in enumerate(people):
        u.display_name = f"Annotator {i} <b>x</b>"
    admin = make_user(db, "admin")
    db.commit()
    rank_all(db, project, people, [by_id, by_id, by_id_reversed])
    pid = project.id

    browser_login(page, live_server, admin.email)
    page.goto(f"{live_server}/projects/{pid}/quality")
    expect(page.locator("h1")).to_contain_text("Quality")
    assert page.locator("svg.plot").count() == 3
    expect(page.locator("#leaderboard svg circle")).to_have_count(3)  # m0, m1, m2 with whiskers
    expect(page.locator("#reward-models svg rect:has(title)")).to_have_count(1)  # one bar (the legend has none)
    expect(page.locator("table.annotators tbody tr")).to_have_count(3)
    expect(page.locator("table.annotators")).to_contain_text("Annotator 0 <b>x</b>")  # escaped, shown as text
    expect(page.locator(".consensus-item")).to_have_count(10)

    # Consensus browser: the next page arrives as an htmx fragment in place.
    page.click("#consensus .pager a")
    expect(page.locator(".consensus-item")).to_have_count(2)
    expect(page.locator("#consensus .pager")).to_contain_text("page 2 of 2")

    csv_link = page.locator('a[href$="/quality/leaderboard.csv"]')
    with page.expect_download() as download:
        csv_link.click()
    assert download.value.suggested_filename == f"project-{pid}-leaderboard.csv"

    page.click("text=Recompute trust weights")
    expect(page.locator(".notice")).to_contain_text("Trust weights recomputed")
    weights = set(db.scalars(select(Ranking.weight).where(Ranking.annotator_id == people[2].id)))
    db.commit()  # end the read transaction (SQLite write lock)
    assert weights == {0.1}
    assert console_errors == []
