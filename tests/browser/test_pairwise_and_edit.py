"""Pairwise mode and the edit window (issue 13, points 5 and 6), in headless Chromium: a K=2 task answered on
the 7-point preference scale by keyboard (1–7, Enter) and by mouse at 390 px, stored as one comparison with
its strength and exported as `margin` only when the export asks; a submitted ranking reopened within its
window, changed and stored as version 2 (version 1 kept), and refused after the window or once trained."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.models import Assignment, Comparison, ModelVersion, ModelVersionComparison, Ranking, RankingVersion
from tests.browser.conftest import browser_login
from tests.factories import make_user
from tests.labeling.helpers import seeded_project

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"


def _open(page: Page, base: str, project_id: int) -> int:
    page.goto(f"{base}/projects/{project_id}/label")
    page.wait_for_url(re.compile(rf"/projects/{project_id}/label/\d+$"))
    page.wait_for_selector("#task[data-assignment][data-ready] .card")
    return int(page.get_attribute("#task", "data-assignment") or 0)


def _next_task(page: Page, previous: int) -> int:
    page.wait_for_function(
        """prev => { const t = document.querySelector('#task');
            return t && (t.dataset.assignment || '') !== prev && t.dataset.ready; }""",
        arg=str(previous),
    )
    return int(page.get_attribute("#task", "data-assignment") or 0)


def _read(db: Session, statement: Any) -> list[Any]:
    """Rows read, detached, and the transaction ended: on SQLite an open one holds the lock the server needs,
    and touching an expired object later would open one again."""
    db.expire_all()
    rows = list(db.scalars(statement))
    for row in rows:
        db.expunge(row)
    db.commit()
    return rows


def _ranking(db: Session, assignment_id: int) -> Ranking | None:
    found = _read(db, select(Ranking).where(Ranking.assignment_id == assignment_id))
    return found[0] if found else None


def _shown(db: Session, assignment_id: int) -> list[int]:
    assignment = db.get(Assignment, assignment_id)
    assert assignment is not None
    shown = list(assignment.shown_completion_ids)
    db.commit()
    return shown


def _by_letter(db: Session, assignment_id: int) -> dict[str, int]:
    ranking = _ranking(db, assignment_id)
    assert ranking is not None
    return {"ABC"[i]: ranking.ranks[str(cid)] for i, cid in enumerate(_shown(db, assignment_id))}


def _axe_serious(page: Page) -> list[str]:
    page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))"""
    )
    return [str(item) for item in found]


def _download_pairs(browser: Browser, base: str, project_id: int, email: str, margin: bool) -> list[dict[str, object]]:
    """The pairs export as an admin downloads it from the export page (the margin box ticked or not)."""
    context = browser.new_context(accept_downloads=True)
    try:
        admin = context.new_page()
        browser_login(admin, base, email)
        admin.goto(f"{base}/projects/{project_id}/export")
        if margin:
            admin.get_by_label(re.compile("margin")).check()
        with admin.expect_download() as info:
            admin.get_by_role("button", name="Download").click()
        text = Path(info.value.path()).read_text(encoding="utf-8")
    finally:
        context.close()
    return [json.loads(line) for line in text.splitlines()]


def test_pairwise_keyboard_and_mouse_store_strength_and_margin_on_request(
    page: Page, browser: Browser, live_server: str, db: Session, console_errors: list[str]
) -> None:
    project = seeded_project(db, prompts=2, k=2, k_min=2, k_max=2, settings={"labeling": {"mode": "pairwise"}})
    user, admin = make_user(db), make_user(db, role="admin")
    admin_email = admin.email
    pid, email = project.id, user.email  # read now: an expired object would take the SQLite write lock
    db.commit()
    page.set_viewport_size(DESKTOP)
    browser_login(page, live_server, email)
    first = _open(page, live_server, pid)
    # Two answers side by side, no rank controls, seven named choices.
    expect(page.locator("#cards > .card")).to_have_count(2)
    expect(page.locator("select.rank")).to_have_count(0)
    boxes = [page.locator(f'.card[data-letter="{x}"]').bounding_box() for x in "AB"]
    assert boxes[0] and boxes[1] and abs(boxes[0]["y"] - boxes[1]["y"]) < 2 and boxes[1]["x"] > boxes[0]["x"]
    names = ["A much better", "A better", "A slightly better", "About the same",
             "B slightly better", "B better", "B much better"]
    for name in names:
        expect(page.get_by_role("radio", name=name, exact=True)).to_have_count(1)
    expect(page.get_by_role("group", name="Which answer is better?")).to_be_visible()
    assert _axe_serious(page) == []
    page.screenshot(path="/tmp/pairwise-1440.png")
    # Keyboard: 6 = "B better", then Enter.
    page.locator("#task").focus()
    page.keyboard.press("3")
    page.keyboard.press("6")
    expect(page.get_by_role("radio", name="B better", exact=True)).to_be_checked()
    expect(page.get_by_role("radio", name="A slightly better", exact=True)).not_to_be_checked()
    expect(page.get_by_test_id("announce")).to_have_text("Chosen: B better.")
    page.keyboard.press("Enter")
    second = _next_task(page, first)
    a, b = _shown(db, first)
    stored = _ranking(db, first)
    assert stored is not None and stored.strength == 2 and stored.ranks == {str(a): 2, str(b): 1}
    (pair,) = _read(db, select(Comparison).where(Comparison.ranking_id == stored.id))
    assert (pair.winner_id, pair.loser_id, pair.strength, pair.is_tie) == (b, a, 2, False)
    # Mouse (a tap) on a phone: no sideways scrolling, answers stacked, the choice wraps.
    page.set_viewport_size(PHONE)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    page.screenshot(path="/tmp/pairwise-390.png", full_page=True)
    phone = [page.locator(f'.card[data-letter="{x}"]').bounding_box() for x in "AB"]
    assert phone[0] and phone[1] and phone[1]["y"] > phone[0]["y"] + phone[0]["height"] - 1
    page.locator("label.scale-option", has_text="A slightly better").click()
    expect(page.get_by_role("radio", name="A slightly better", exact=True)).to_be_checked()
    assert _axe_serious(page) == []
    page.get_by_role("button", name="Submit choice").click()
    expect(page.get_by_test_id("all-done")).to_be_visible()
    c, d = _shown(db, second)
    later = _ranking(db, second)
    assert later is not None and later.strength == 1 and later.ranks == {str(c): 1, str(d): 2}
    assert console_errors == []
    # The default export stays TRL's format (no margin); ticking the box adds the strength as margin.
    plain = _download_pairs(browser, live_server, pid, admin_email, margin=False)
    assert len(plain) == 2 and all("margin" not in row for row in plain)
    assert {(r["chosen_completion_id"], r["rejected_completion_id"]) for r in plain} == {(b, a), (c, d)}
    with_margin = _download_pairs(browser, live_server, pid, admin_email, margin=True)
    assert {(r["chosen_completion_id"], r["margin"]) for r in with_margin} == {(b, 2), (c, 1)}


def test_pairwise_tie_is_kept_but_not_exported(page: Page, live_server: str, db: Session, clean_engine: Engine) -> None:
    project = seeded_project(db, prompts=1, k=2, k_min=2, k_max=2, settings={"labeling": {"mode": "pairwise"}})
    user = make_user(db)
    pid, email = project.id, user.email  # read now: an expired object would take the SQLite write lock
    db.commit()
    browser_login(page, live_server, email)
    aid = _open(page, live_server, pid)
    page.locator("#task").focus()
    page.keyboard.press("Enter")  # nothing chosen yet: the server names the missing choice
    expect(page.get_by_test_id("submit-errors")).to_contain_text("Preference: choose which answer is better")
    assert _ranking(db, aid) is None
    page.locator("#task").focus()
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("all-done")).to_be_visible()
    stored = _ranking(db, aid)
    assert stored is not None and stored.strength == 0 and len(set(stored.ranks.values())) == 1


def test_edit_window_reopen_change_versioned_then_refused_once_trained(
    page: Page, live_server: str, db: Session
) -> None:
    project = seeded_project(db, prompts=2, k=3)
    user = make_user(db)
    pid, email = project.id, user.email  # read now: an expired object would take the SQLite write lock
    db.commit()
    page.set_viewport_size(DESKTOP)
    browser_login(page, live_server, email)
    first = _open(page, live_server, pid)
    page.keyboard.type("ca")
    page.fill('textarea[name="rationale"]', "C answers it.")
    page.locator("#task").focus()
    page.keyboard.press("Enter")
    current = _next_task(page, first)
    assert _by_letter(db, first) == {"C": 1, "A": 2, "B": 3}
    link = page.get_by_test_id("edit-last")
    expect(link).to_contain_text("You can still change your last ranking for 10 min")
    link.get_by_role("link", name="Change it").click()
    page.wait_for_url(re.compile(rf"/label/{first}/edit$"))
    page.wait_for_selector("#task[data-edit][data-ready] .card")
    # Reopened as stored: its order, its rationale, and no skip.
    assert page.evaluate("() => window.prefloopRanking.order()") == "C A B"
    expect(page.locator('textarea[name="rationale"]')).to_have_value("C answers it.")
    expect(page.get_by_test_id("editing")).to_contain_text("version 1")
    expect(page.locator("#skip")).to_have_count(0)
    page.screenshot(path="/tmp/edit-1440.png")
    page.locator("#task").focus()
    page.keyboard.type("b")  # B first; the others follow in their order
    page.fill('textarea[name="rationale"]', "On second reading B is right.")
    page.get_by_role("button", name="Save changes").click()
    _next_task(page, first)
    expect(page.get_by_test_id("announce")).to_have_text("Changed — your ranking is now version 2")
    assert int(page.get_attribute("#task", "data-assignment") or 0) == current  # back to the task at hand
    assert _by_letter(db, first) == {"B": 1, "C": 2, "A": 3}
    ranking = _ranking(db, first)
    assert ranking is not None and ranking.version == 2 and ranking.rationale == "On second reading B is right."
    (old,) = _read(db, select(RankingVersion).where(RankingVersion.ranking_id == ranking.id))
    pairs = _read(db, select(Comparison).where(Comparison.ranking_id == ranking.id))
    shown = _shown(db, first)
    letter = {cid: "ABC"[i] for i, cid in enumerate(shown)}
    assert old.version == 1 and {letter[int(k)]: v for k, v in old.ranks.items()} == {"C": 1, "A": 2, "B": 3}
    assert old.rationale == "C answers it."
    assert {(letter[p.winner_id], letter[p.loser_id]) for p in pairs} == {("B", "C"), ("B", "A"), ("C", "A")}
    # Reopen again, then a reward model trains on it before the change is saved: refused, input shown back.
    page.get_by_test_id("edit-last").get_by_role("link", name="Change it").click()
    page.wait_for_selector("#task[data-edit][data-ready] .card")
    version = ModelVersion(project_id=pid, kind="reward", name="reward-v1", base_model="tiny",
                           status="candidate", data_watermark=max(p.id for p in pairs))
    db.add(version)
    db.flush()
    db.add_all([ModelVersionComparison(model_version_id=version.id, comparison_id=p.id) for p in pairs])
    db.commit()
    page.locator("#task").focus()
    page.keyboard.type("a")
    page.keyboard.press("Enter")
    conflict = page.get_by_test_id("conflict")
    expect(conflict).to_contain_text("already been used to train a model")
    expect(conflict).to_contain_text("A — rank 1")
    ranking = _ranking(db, first)
    assert ranking is not None and ranking.version == 2
    page.goto(f"{live_server}/projects/{pid}/label")
    page.wait_for_selector("#task[data-assignment][data-ready] .card")
    expect(page.get_by_test_id("edit-last")).to_have_count(0)


def test_edit_refused_after_the_window(page: Page, live_server: str, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3, settings={"labeling": {"edit_window_minutes": 3}})
    user = make_user(db)
    pid, email = project.id, user.email  # read now: an expired object would take the SQLite write lock
    db.commit()
    browser_login(page, live_server, email)
    first = _open(page, live_server, pid)
    page.keyboard.type("bca")
    page.keyboard.press("Enter")
    _next_task(page, first)
    expect(page.get_by_test_id("edit-last")).to_contain_text("for 3 min")
    page.get_by_test_id("edit-last").get_by_role("link", name="Change it").click()
    page.wait_for_selector("#task[data-edit][data-ready] .card")
    # Four minutes pass (the submission moved back in time) before the change is saved.
    (assignment,) = _read(db, select(Assignment).where(Assignment.id == first))
    assert assignment.finished_at is not None
    db.execute(update(Assignment).where(Assignment.id == first)
               .values(finished_at=assignment.finished_at - timedelta(minutes=4)))
    db.commit()
    page.locator("#task").focus()
    page.keyboard.type("a")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("conflict")).to_contain_text("3-minute window to change it closed")
    assert _by_letter(db, first) == {"B": 1, "C": 2, "A": 3}
    ranking = _ranking(db, first)
    assert ranking is not None and ranking.version == 1
    # The edit page itself now says so and shows the current task instead.
    page.goto(f"{live_server}/projects/{pid}/label/{first}/edit")
    page.wait_for_selector("#task[data-assignment][data-ready] .card")
    expect(page.locator(".notice")).to_contain_text("can no longer be changed")
    assert int(page.get_attribute("#task", "data-assignment") or 0) != first
    expect(page.get_by_test_id("edit-last")).to_have_count(0)
