"""The data browser in headless Chromium: an admin goes from the project page to the prompt list, finds a
prompt by one word of its text (htmx swaps the results in place), opens its K=9 ranking as the annotator saw
it (letters in display order, long texts, the tie, the flag, the rationale, the time) and marks it gold with
one click. Screenshots go to /tmp/browse_*.png; the page makes no console errors (CSP)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from app.models import Prompt
from tests.browse.scene import FLAG, build
from tests.browser.conftest import browser_login

pytestmark = pytest.mark.browser


def test_find_a_prompt_open_its_k9_ranking_and_mark_it_gold(
    page: Page, live_server: str, db: Session, console_errors: list[str]
) -> None:
    scene = build(db)
    pid, prompt_id, ranking_id = scene.project.id, scene.aurora.id, scene.aurora_ranking.id
    browser_login(page, live_server, scene.admin.email)
    page.set_viewport_size({"width": 1440, "height": 900})

    page.goto(f"{live_server}/projects/{pid}")
    page.click("nav.tabs >> text=Data")
    expect(page.locator("h1")).to_contain_text("Data")
    expect(page.locator("[data-testid=prompt-results] tbody tr")).to_have_count(3)

    page.fill('input[name="q"]', "borealis")
    page.click("form.filters button[type=submit]")
    expect(page.locator("[data-testid=prompt-results] tbody tr")).to_have_count(1)
    assert "/data/prompts?q=borealis" in page.url  # pushed to the address bar: the search can be shared
    page.screenshot(path="/tmp/browse_prompts.png")
    page.click(f'a[href="/projects/{pid}/data/prompts/{prompt_id}"]')

    expect(page.locator("[data-testid=prompt-text]")).to_contain_text("aurora borealis")
    page.screenshot(path="/tmp/browse_prompt.png")
    page.click(f'a[href="/projects/{pid}/data/rankings/{ranking_id}"]')

    items = page.locator("[data-testid=shown] > li")
    expect(items).to_have_count(9)
    assert [items.nth(i).get_attribute("data-letter") for i in range(9)] == list("ABCDEFGHI")
    expect(page.locator("[data-testid=order]")).to_have_text("A > B = C > D > E > F > G > H > I")
    expect(page.locator("li.shown-item.tied")).to_have_count(2)
    expect(items.nth(0).locator(".flag")).to_have_text(FLAG)
    expect(page.locator("[data-testid=rationale]")).to_contain_text("<script>alert(1)</script>")  # shown as text
    expect(page.locator("[data-testid=time]")).to_contain_text("42 s active")
    first_text = items.nth(0).locator(".completion-body")
    expect(first_text).to_contain_text("Sentence 29")  # the whole long answer is there (it scrolls in its box)
    page.screenshot(path="/tmp/browse_ranking.png")
    page.screenshot(path="/tmp/browse_ranking_full.png", full_page=True)

    page.click("[data-testid=mark-gold]")
    expect(page.locator(".notice")).to_contain_text("Gold item saved from this ranking")
    expect(page.locator("h2 .badge")).to_have_text("gold prompt")
    db.expire_all()
    prompt = db.get(Prompt, prompt_id)
    assert prompt is not None and prompt.is_gold and len((prompt.gold_spec or {})["constraints"]) == 9
    db.commit()  # end the read transaction (SQLite write lock)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.screenshot(path="/tmp/browse_ranking_390.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.goto(f"{live_server}/projects/{pid}/data/prompts/{prompt_id}/remove")
    expect(page.locator("[data-testid=delete-refused]")).to_be_visible()
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path="/tmp/browse_remove.png", full_page=True)
    assert console_errors == []
