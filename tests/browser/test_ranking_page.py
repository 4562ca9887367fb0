"""The ranking page in headless Chromium: drag, keyboard-only ranking with a tie, flags, the untouched
guard, the next task swapped in, the back button, the expired-lease path, and hostile completions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Page, Request, expect
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.labeling import assignment as tasks
from app.models import Assignment, Comparison, Completion, Ranking, Slot, utcnow
from tests.browser.conftest import browser_login, dismiss_next_dialog
from tests.factories import make_user
from tests.labeling.helpers import seeded_project

pytestmark = pytest.mark.browser


def _open_task(page: Page, base: str, project_id: int) -> int:
    page.goto(f"{base}/projects/{project_id}/label")
    page.wait_for_url(re.compile(rf"/projects/{project_id}/label/\d+$"))
    page.wait_for_selector("#task[data-assignment] .card")
    return int(page.get_attribute("#task", "data-assignment") or 0)


def _stored(db: Session, assignment_id: int) -> Ranking | None:
    """Read, then end the transaction: on SQLite an open one holds the write lock the server needs."""
    db.expire_all()
    ranking = db.scalar(select(Ranking).where(Ranking.assignment_id == assignment_id))
    db.commit()
    return ranking


def _ranking(db: Session, assignment_id: int) -> Ranking:
    ranking = _stored(db, assignment_id)
    assert ranking is not None
    return ranking


def _cid(page: Page, letter: str) -> str:
    return page.get_attribute(f'.card[data-letter="{letter}"]', "data-cid") or ""


def _next_task_shown(page: Page, previous: int) -> None:
    page.wait_for_function(
        "prev => { const t = document.querySelector('#task'); return t && (t.dataset.assignment || '') !== prev; }",
        arg=str(previous),
    )


def test_drag_flag_submit_next_task_and_back(page: Page, live_server: str, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=4)
    user = make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    page.set_viewport_size({"width": 1280, "height": 2400})  # source and target on screen together
    first = _open_task(page, live_server, project.id)
    assert page.evaluate("() => typeof window.Sortable") == "function"
    handle = page.locator('.card[data-letter="C"] .drag-handle').bounding_box()
    target = page.locator('.card[data-letter="A"]').bounding_box()
    assert handle and target
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(target["x"] + 20, target["y"] + 10, steps=12)
    page.mouse.move(target["x"] + 20, target["y"] + 5, steps=4)
    page.mouse.up()
    expect(page.locator("#cards > .card").first).to_have_attribute("data-letter", "C")
    expect(page.get_by_test_id("rank-C")).to_have_value("1")
    page.click('.card[data-letter="B"] button[data-action="meta"]')  # flags fold behind one button
    flag = page.locator('.card[data-letter="B"] input[type="checkbox"]').first
    flag.check()
    flag_name = flag.get_attribute("value")
    page.click('button[data-action="submit"]')
    _next_task_shown(page, str(first))
    assert page.url.endswith(f"/label/{page.get_attribute('#task', 'data-assignment')}")
    ranking = _ranking(db, first)
    assert ranking.wall_seconds is not None and ranking.active_seconds is not None
    assert min(ranking.ranks, key=lambda k: ranking.ranks[k]) == str(
        db.get(Assignment, first).shown_completion_ids[2]
    )  # type: ignore[union-attr]
    assert flag_name in next(iter(v for v in ranking.flags.values() if v))
    db.commit()
    # htmx keeps no history snapshots (historyCacheSize 0): going back reloads the full page from the server.
    page.go_back(wait_until="commit")
    page.wait_for_selector(".notice", timeout=15_000)
    assert re.search(rf"/label/{first}$", page.url)
    expect(page.locator(".notice")).to_contain_text("submitted")
    expect(page.locator("header.topbar")).to_be_visible()  # a full page, never a bare fragment


def test_keyboard_only_with_tie_and_help(page: Page, live_server: str, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    aid = _open_task(page, live_server, project.id)
    page.keyboard.press("?")
    expect(page.locator("#help-dialog")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help-dialog")).to_be_hidden()
    page.locator("body").focus()
    page.keyboard.press("ArrowDown")  # focus card A
    page.keyboard.press("4")  # A to the bottom: B C D A
    page.keyboard.press("ArrowUp")  # focus D
    page.keyboard.press("t")  # D ties with C
    expect(page.locator('.card[data-letter="D"]')).to_have_class(re.compile("tied"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("all-done")).to_be_visible()
    ranking = _ranking(db, aid)
    letters = {_cid_letter: r for _cid_letter, r in ranking.ranks.items()}
    shown = db.get(Assignment, aid).shown_completion_ids  # type: ignore[union-attr]
    a, b, c, d = (str(i) for i in shown)
    assert (letters[b], letters[c], letters[d], letters[a]) == (1, 2, 2, 3)
    ties = db.scalars(select(Comparison).where(Comparison.ranking_id == ranking.id, Comparison.is_tie)).all()
    assert len(ties) == 1


def test_untouched_order_asks_for_confirmation(page: Page, live_server: str, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3)
    user = make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    aid = _open_task(page, live_server, project.id)
    seen = dismiss_next_dialog(page)
    page.click('button[data-action="submit"]')
    page.wait_for_function("() => true")  # let the dialog round-trip settle
    assert seen and "initial order" in seen[0]
    assert _stored(db, aid) is None
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('button[data-action="submit"]')
    _next_task_shown(page, str(aid))
    assert _ranking(db, aid).ranks


def test_expired_lease_taken_over_shows_echo(page: Page, live_server: str, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    user, other = make_user(db), make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    aid = _open_task(page, live_server, project.id)
    past = utcnow() - timedelta(minutes=1)
    db.execute(update(Slot).values(lease_expires_at=past))
    db.execute(update(Assignment).values(lease_expires_at=past))
    db.commit()
    assert tasks.next_task(db, project, other) is not None
    db.commit()
    page.locator('.card[data-letter="A"]').focus()
    page.keyboard.press("3")
    page.fill('textarea[name="rationale"]', "A rambles; C is precise.")
    page.click('button[data-action="submit"]')
    expect(page.get_by_test_id("conflict")).to_be_visible()
    expect(page.locator("#echo-rationale")).to_have_value("A rambles; C is precise.")
    assert _stored(db, aid) is None


HOSTILE = (
    '<script>alert("s")</script> <img src=x onerror=alert("i")> <svg onload=alert("v")></svg>'
    ' [click](javascript:alert("j")) <a href="javascript:alert(1)">raw link</a> "><b>breakout</b>'
    ' <div hx-get="/api/projects" hx-trigger="load">h1</div> <button hx-on:click="alert(1)">h2</button>'
    ' <span data-hx-get="/api/projects" data-hx-trigger="load">h3</span>'
)


def test_hostile_completion_is_inert(
    page: Page, live_server: str, db: Session, console_errors: list[str]
) -> None:
    project = seeded_project(db, prompts=1, k=2)
    for completion in db.scalars(select(Completion)):
        completion.text = HOSTILE
    user = make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    def on_request(request: Request) -> None:
        requests.append(request.url)

    page.on("request", on_request)
    _open_task(page, live_server, project.id)
    for button in page.locator('button[data-action="raw"]').all():
        button.click()
    page.locator(".completion-body").first.click()
    hostile_elements = (
        ".completion-body script, .completion-body img, .completion-body svg, .completion-body button"
    )
    assert page.locator(hostile_elements).count() == 0
    assert (
        page.locator(
            '.completion-body a[href^="javascript"], .completion-body [hx-get], .completion-body [data-hx-get]'
        ).count()
        == 0
    )
    page.wait_for_load_state("networkidle")
    expect(page.locator(".completion-body").first).to_contain_text("<script>")
    assert dialogs == []
    allowed = re.compile(
        rf"^{re.escape(live_server)}/(projects/{project.id}/label(/\d+)?|static/.*|static-gen/.*)$"
    )
    assert [u for u in requests if not allowed.match(u)] == []
    assert console_errors == []
