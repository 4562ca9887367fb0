"""In Chromium: choosing the shared TL;DR CSV shows its first rows and the guessed mapping (context, sample,
model_type); importing with it shows the import's progress, then brings in all 100 prompts and their 1,200
completions (issue 14, point 2)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page
from sqlalchemy.orm import Session

from tests.browser.conftest import browser_login
from tests.conftest import shared_data
from tests.factories import make_project, make_user

pytestmark = pytest.mark.browser


def test_upload_maps_the_tldr_columns_in_the_preview(page: Page, live_server: str, db: Session,
                                                     console_errors: list[str]) -> None:
    admin = make_user(db, "admin")
    project = make_project(db, k_min=4, k_max=9)
    db.commit()
    browser_login(page, live_server, admin.email)
    page.goto(f"{live_server}/projects/{project.id}/import")
    page.set_input_files('input[name="file"]', str(shared_data("instructgpt-samples", "tldr_samples.csv")))
    preview = page.locator(".import-preview")
    preview.wait_for()
    assert "read as long" in preview.inner_text()
    assert page.locator('select[name="prompt_column"]').input_value() == "context"
    assert page.locator('select[name="completion_column"]').input_value() == "sample"
    assert page.locator('select[name="model_column"]').input_value() == "model_type"
    assert page.locator(".preview-rows tbody tr").count() == 5
    page.get_by_role("button", name="Import").click()
    # The upload answers at once with a progress fragment that polls itself, then swaps in the report.
    progress = page.locator("#import-progress")
    progress.wait_for()
    assert "tldr_samples.csv" in progress.inner_text()
    report = page.locator("#import-report")
    report.wait_for()
    text = report.inner_text()
    assert "100 prompt(s) added" in text and "1200 completion(s)" in text, text
    assert page.locator("#import-progress").count() == 0
    assert console_errors == []
