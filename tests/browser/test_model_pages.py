"""Model and job pages in headless Chromium: a model page shows its curves and calibration as SVG charts,
its metrics as a table, its lineage as counts that link into the data browser (which lists what they
count) and no raw JSON until asked for; a job result reads without escapes; the job list shows a newly
queued job without a reload. Screenshots go to /tmp/models_*.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from app.jobs import queue
from tests.browser.conftest import browser_login
from tests.registry.model_scene import build

pytestmark = pytest.mark.browser


def _visible_text_outside_details(page: Page) -> str:
    return str(page.evaluate("""() => {
        const copy = document.body.cloneNode(true);
        copy.querySelectorAll('details').forEach(d => d.remove());
        return copy.innerText;
    }"""))


def test_model_pages_read_as_charts_tables_and_links(
    page: Page, live_server: str, db: Session, console_errors: list[str]
) -> None:
    scene = build(db)
    db.commit()
    pid = scene.project.id
    browser_login(page, live_server, scene.admin.email)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server}/projects/{pid}/models")
    page.screenshot(path="/tmp/models_list.png", full_page=True)
    expect(page.locator("[data-testid=rollback-policy]")).to_have_count(0)  # nothing to roll back to
    expect(page.locator("[data-testid=rollback-reward]")).to_have_count(0)
    expect(page.locator("[data-testid=model-tables]")).to_have_attribute("hx-trigger", "every 30s")
    assert '{"' not in _visible_text_outside_details(page)

    page.goto(f"{live_server}/projects/{pid}/models/{scene.reward.id}")
    page.screenshot(path="/tmp/models_reward.png", full_page=True)
    expect(page.locator("[data-testid=charts] svg")).to_have_count(4)  # loss, validation ×2, calibration
    expect(page.locator("[data-testid=charts] svg").last).to_have_attribute("aria-label", re.compile("Calibration"))
    expect(page.locator("[data-testid=facts]")).to_contain_text("held-out accuracy")
    expect(page.locator("[data-testid=status-sentence]")).to_have_text(
        "In use: held-out accuracy 0.610; no measured active reward model.")
    text = _visible_text_outside_details(page)
    assert '{"' not in text and "loss_curve" not in text
    expect(page.locator("details.raw pre").first).not_to_be_visible()
    page.click("details.raw > summary")
    expect(page.locator("details.raw pre").first).to_contain_text('"loss_curve"')
    expect(page.locator("details.raw pre").last).to_contain_text("größer → besser")  # not \u2192

    lineage = page.locator("[data-testid=lineage] a", has_text="from 6 ranking(s)")
    expect(lineage).to_contain_text("18 comparison(s)")
    lineage.click()
    assert f"trained_by={scene.reward.id}" in page.url
    expect(page.locator("#results tbody tr")).to_have_count(6)

    page.goto(f"{live_server}/projects/{pid}/models/{scene.policy.id}")
    page.screenshot(path="/tmp/models_policy.png", full_page=True)
    expect(page.locator("[data-testid=charts] svg")).to_have_count(3)  # reward, KL, loss
    expect(page.locator("[data-testid=status-sentence]")).to_have_text(
        "Rejected: mean reward did not improve (0.1726 → 0.1597).")
    assert '{"' not in _visible_text_outside_details(page)

    page.goto(f"{live_server}/jobs/{scene.job.id}")
    page.screenshot(path="/tmp/models_job.png", full_page=True)
    expect(page.locator("[data-testid=job-result]")).to_contain_text("mean reward did not improve (0.1726 → 0.1597)")
    assert "\\u2192" not in page.locator("body").inner_text()
    assert not console_errors


def test_job_list_shows_a_newly_queued_job_without_reload(
    page: Page, live_server: str, db: Session, console_errors: list[str]
) -> None:
    scene = build(db)
    running, _ = queue.enqueue(db, "score_prompts", scene.project.id)
    db.commit()
    browser_login(page, live_server, scene.admin.email)
    page.goto(f"{live_server}/projects/{scene.project.id}/jobs")
    table = page.locator("[data-testid=job-table]")
    expect(table).to_have_attribute("hx-trigger", "every 5s")  # a job is queued: polls fast
    expect(page.locator(f"tr[data-job='{running.id}']")).to_have_count(1)
    expect(page.locator("[data-testid=loop-busy]")).to_be_visible()  # no button that cannot apply
    expect(page.locator("button", has_text="Run the loop now")).to_have_count(0)

    new, _ = queue.enqueue(db, "sample_completions", scene.project.id)
    db.commit()
    expect(page.locator(f"tr[data-job='{new.id}']")).to_have_count(1, timeout=12_000)
    page.screenshot(path="/tmp/models_jobs.png", full_page=True)
    assert not console_errors
