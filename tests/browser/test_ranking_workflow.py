"""The ranking page as a labeling team uses it (issue 13), in headless Chromium: a K=9 TL;DR task on one
1440x900 screen with the prompt in view, typing the order (K letters + Enter), rank changes that never tie,
a draft that survives a reload and an ended session, "saved" feedback and errors by letter, and 390 px."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.labeling import service
from app.labeling.slots import ensure_slots
from app.models import Assignment, Completion, Project, Prompt, Ranking
from tests.browser.conftest import browser_login, dismiss_next_dialog
from tests.conftest import shared_data
from tests.factories import PASSWORD, make_project, make_user
from tests.labeling.helpers import seeded_project, strict_ranking

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
CODE = "```python\n" + "values = [" + ", ".join(str(i) for i in range(120)) + "]\nprint(sum(values))\n```"


def _tldr_rows() -> Iterator[tuple[str, list[str]]]:
    """(post, samples) pairs from the real TL;DR file: every post has 12 model summaries."""
    by_post: dict[str, list[str]] = {}
    with shared_data("instructgpt-samples", "tldr_samples.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            by_post.setdefault(row["context"], []).append(row["sample"].strip() or "(empty)")
    yield from by_post.items()


def _tldr_project(db: Session, prompts: int = 2, k: int = 9, extra: str = "", **fields: object) -> Project:
    """K answers per TL;DR post; `extra` is appended to answer B (a long text or code)."""
    project = make_project(db, k_min=k, k_max=k, **fields)
    for n, (post, samples) in zip(range(prompts), _tldr_rows(), strict=False):
        prompt = Prompt(project_id=project.id, external_id=f"tldr{n}", text=post, content_hash=f"{n:064x}")
        db.add(prompt)
        db.flush()
        for i, sample in enumerate(samples[:k]):
            text = sample + ("\n\n" + extra if extra and i == 1 else "")
            db.add(Completion(prompt_id=prompt.id, position=i, text=text, model_name=f"m{i}"))
    db.flush()
    ensure_slots(db, project)
    db.commit()
    return project


def _open(page: Page, base: str, project: Project) -> int:
    page.goto(f"{base}/projects/{project.id}/label")
    page.wait_for_url(re.compile(rf"/projects/{project.id}/label/\d+$"))
    page.wait_for_selector("#task[data-assignment][data-ready] .card")  # label.js has set the page up
    return int(page.get_attribute("#task", "data-assignment") or 0)


def _shown(db: Session, assignment_id: int) -> list[int]:
    assignment = db.get(Assignment, assignment_id)
    assert assignment is not None
    shown = list(assignment.shown_completion_ids)
    db.commit()
    return shown


def _stored(db: Session, assignment_id: int) -> Ranking | None:
    """Read, then end the transaction: on SQLite an open one holds the write lock the server needs."""
    db.expire_all()
    ranking = db.scalar(select(Ranking).where(Ranking.assignment_id == assignment_id))
    db.commit()
    return ranking


def _by_letter(db: Session, assignment_id: int) -> dict[str, int]:
    """The stored ranks keyed by the letter each answer had on screen."""
    ranking = _stored(db, assignment_id)
    assert ranking is not None
    shown = _shown(db, assignment_id)
    return {"ABCDEFGHI"[i]: ranking.ranks[str(cid)] for i, cid in enumerate(shown)}


def _order(page: Page) -> str:
    return str(page.evaluate("() => window.prefloopRanking.order()"))


def _next_task(page: Page, previous: int) -> None:
    """Wait until the next task is swapped in and label.js has set it up (htmx's settle step)."""
    page.wait_for_function(
        """prev => { const t = document.querySelector('#task');
            return t && (t.dataset.assignment || '') !== prev && t.dataset.ready; }""",
        arg=str(previous),
    )


def _in_viewport(page: Page, selector: str) -> bool:
    return bool(
        page.evaluate(
            """sel => { const r = document.querySelector(sel).getBoundingClientRect();
                return r.bottom > 40 && r.top < window.innerHeight && r.height > 40; }""",
            selector,
        )
    )


def _luminance(rgb: str) -> float:
    channels = [int(v) / 255 for v in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_k9_tldr_fits_one_screen_with_prompt_in_view(page: Page, live_server: str, db: Session) -> None:
    project = _tldr_project(db, extra=("A long middle paragraph that goes on. " * 40))
    user = make_user(db)
    db.commit()
    page.set_viewport_size(DESKTOP)
    browser_login(page, live_server, user.email)
    first = _open(page, live_server, project)
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.screenshot(path="/tmp/ranking-k9-1440.png")
    assert height <= 1000, f"K=9 task page is {height}px tall at 1440x900"
    for letter in "ABCDEFGHI":
        page.locator(f'.card[data-letter="{letter}"]').scroll_into_view_if_needed()
        assert _in_viewport(page, ".prompt"), f"prompt out of view with card {letter} in view"
    # Flags and quality fold behind one button per card; nothing is required here, so they start closed.
    assert page.locator(".card input[type=checkbox]:visible").count() == 0
    card_b = page.locator('.card:has-text("A long middle paragraph")')
    long_letter = card_b.get_attribute("data-letter")
    body_height = card_b.locator(".completion-body").bounding_box()
    assert body_height and body_height["height"] < 80  # clamped preview
    card_b.get_by_role("button", name=f"Show all of answer {long_letter}").click()
    expanded = card_b.locator(".completion-body").bounding_box()
    assert expanded and expanded["height"] > 200
    page.get_by_role("button", name="Flags and quality of answer C").click()
    expect(page.locator('.card[data-letter="C"] input[type=checkbox]').first).to_be_visible()
    # The side-by-side choice is remembered for the next task.
    page.click('button[data-action="layout"]')
    expect(page.locator("#cards")).to_have_class(re.compile("layout-side-by-side"))
    page.locator("#task").focus()
    page.keyboard.type("ab")
    page.keyboard.press("Enter")
    _next_task(page, first)
    expect(page.locator("#cards")).to_have_class(re.compile("layout-side-by-side"))
    page.reload()
    expect(page.locator("#cards")).to_have_class(re.compile("layout-side-by-side"))


def test_typing_nine_letters_and_enter_stores_that_ranking(page: Page, live_server: str, db: Session) -> None:
    project = _tldr_project(db, prompts=1)
    user = make_user(db)
    db.commit()
    page.set_viewport_size(DESKTOP)
    browser_login(page, live_server, user.email)
    aid = _open(page, live_server, project)
    keys = list("dagbicehf") + ["Enter"]
    for key in keys:  # focus is on the page, outside any text field
        page.keyboard.press(key)
    expect(page.get_by_test_id("all-done")).to_be_visible()
    assert len(keys) == 10
    stored = _by_letter(db, aid)
    assert [letter for letter, _ in sorted(stored.items(), key=lambda kv: kv[1])] == list("DAGBICEHF")
    assert sorted(stored.values()) == list(range(1, 10))


def test_equals_ties_and_backspace_undoes(page: Page, live_server: str, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=4)
    user = make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    first = _open(page, live_server, project)
    page.keyboard.type("b=c")
    assert _order(page) == "B=C A D"
    expect(page.locator('.card[data-letter="C"]')).to_have_class(re.compile("tied"))
    expect(page.get_by_test_id("announce")).to_contain_text("C tied at rank 1")
    page.keyboard.press("Backspace")
    assert _order(page) == "B A C D"
    page.keyboard.type("da")
    assert _order(page) == "B D A C"
    page.keyboard.press("Enter")
    _next_task(page, first)
    assert _by_letter(db, first) == {"B": 1, "D": 2, "A": 3, "C": 4}
    second = int(page.get_attribute("#task", "data-assignment") or 0)
    page.keyboard.type("c=ab")  # C and A tied best, then B; D follows
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("all-done")).to_be_visible()
    assert _by_letter(db, second) == {"C": 1, "A": 1, "B": 2, "D": 3}


def test_rank_select_moves_the_others_never_ties(page: Page, live_server: str, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    aid = _open(page, live_server, project)
    page.get_by_role("combobox", name="Rank of answer C").select_option("3")
    page.get_by_role("combobox", name="Rank of answer A").select_option("3")
    assert _order(page) == "B C A D"
    expect(page.get_by_test_id("announce")).to_contain_text("Answer A moved to rank 3")
    page.get_by_role("combobox", name="Rank of answer D").select_option("1")
    assert _order(page) == "D B C A"
    values = [page.get_by_test_id(f"rank-{letter}").input_value() for letter in "ABCD"]
    assert sorted(values) == ["1", "2", "3", "4"]
    assert page.locator(".card.tied").count() == 0
    # A number key gives the focused answer that rank, as the help says.
    page.locator('.card[data-letter="A"]').focus()
    page.keyboard.press("2")
    assert _order(page) == "D A B C"
    page.locator("#task").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("all-done")).to_be_visible()
    assert _by_letter(db, aid) == {"D": 1, "A": 2, "B": 3, "C": 4}


def test_draft_survives_reload_and_guard_looks_at_order_only(
    page: Page, live_server: str, db: Session
) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    db.commit()
    browser_login(page, live_server, user.email)
    aid = _open(page, live_server, project)
    # Only a rationale and a flag: the order is untouched, so Submit still asks.
    page.fill('textarea[name="rationale"]', "C is the only one that answers.")
    page.get_by_role("button", name="Flags and quality of answer A").click()
    flag = page.locator('.card[data-letter="A"] input[type=checkbox]').first
    flag.check()
    page.get_by_role("button", name="Flags and quality of answer B").click()
    page.get_by_role("combobox", name="Quality of answer B (1–7)").select_option("6")
    seen = dismiss_next_dialog(page)
    page.click('button[data-action="submit"]')
    page.wait_for_function("() => true")
    assert seen and "initial order" in seen[0]
    page.locator("#task").focus()
    page.keyboard.type("cb")
    page.reload()
    page.wait_for_selector("#task[data-assignment][data-ready] .card")
    assert _order(page) == "C B A D"
    expect(page.locator('textarea[name="rationale"]')).to_have_value("C is the only one that answers.")
    expect(page.locator('.card[data-letter="A"] input[type=checkbox]').first).to_be_checked()
    expect(page.locator('.card[data-letter="A"] input[type=checkbox]').first).to_be_visible()  # reopened
    expect(page.get_by_role("combobox", name="Quality of answer B (1–7)")).to_have_value("6")
    page.locator("#task").focus()
    page.keyboard.type("a")  # typing goes on where it stopped
    assert _order(page) == "C B A D"
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("all-done")).to_be_visible()
    assert _by_letter(db, aid) == {"C": 1, "B": 2, "A": 3, "D": 4}
    ranking = _stored(db, aid)
    assert ranking is not None and ranking.rationale == "C is the only one that answers."
    assert page.evaluate(f"() => localStorage.getItem('prefloop:draft:{aid}')") is None


def test_ended_session_keeps_the_ranking_and_submits_after_sign_in(
    page: Page, live_server: str, db: Session
) -> None:
    project = seeded_project(db, prompts=1, k=3)
    email = make_user(db).email  # kept: touching an expired ORM object later would open a read transaction
    db.commit()
    browser_login(page, live_server, email)
    aid = _open(page, live_server, project)
    page.keyboard.type("ca")
    page.context.clear_cookies()  # the session ends (expiry or sign-out in another tab)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("submit-errors")).to_contain_text("Your session has ended")
    assert re.search(rf"/label/{aid}$", page.url)  # still on the task, nothing dropped
    assert _order(page) == "C A B"
    assert _stored(db, aid) is None
    page.get_by_test_id("relogin").click()
    page.wait_for_url(re.compile(r"/login"))
    page.fill('input[name="email"]', email)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page.get_by_test_id("all-done")).to_be_visible()
    assert _by_letter(db, aid) == {"C": 1, "A": 2, "B": 3}


def test_saved_announced_next_task_on_top_and_errors_by_letter(
    page: Page, live_server: str, db: Session
) -> None:
    labeling = {"flags_required": True, "likert_required": True, "rationale_required": True}
    project = _tldr_project(db, prompts=2, k=4, settings={"labeling": labeling})
    user = make_user(db)
    db.commit()
    page.set_viewport_size(DESKTOP)
    browser_login(page, live_server, user.email)
    first = _open(page, live_server, project)
    shown = _shown(db, first)
    # Required: flags and quality start open on every card.
    expect(page.locator('.card[data-letter="D"] input[type=checkbox]').first).to_be_visible()
    page.keyboard.type("ba")
    page.locator('.card[data-letter="A"] input[value="__none__"]').check()
    page.locator("#task").focus()
    page.keyboard.press("Enter")
    errors = page.get_by_test_id("submit-errors")
    expect(errors).to_contain_text("Flags")
    text = errors.inner_text()
    assert "answers B, C, D" in text and "Quality" in text and "Rationale" in text  # all at once
    without_scale = text.replace("(1–7)", "")
    assert "completion" not in text, text
    assert not any(re.search(rf"\b{cid}\b", without_scale) for cid in shown), text
    expect(page.locator(".card.invalid")).to_have_count(4)
    expect(page.locator('.card[data-letter="C"] [data-card-error]')).to_contain_text("Flags missing")
    submit_box = page.locator('button[data-action="submit"]').bounding_box()
    errors_box = errors.bounding_box()
    assert submit_box and errors_box and 0 < submit_box["y"] - errors_box["y"] < 300  # next to Submit
    assert _stored(db, first) is None
    for letter in "ABCD":
        page.locator(f'.card[data-letter="{letter}"] input[value="__none__"]').check()
        page.get_by_role("combobox", name=f"Quality of answer {letter} (1–7)").select_option("5")
    page.fill('textarea[name="rationale"]', "B is concise.")
    page.mouse.wheel(0, 2000)
    page.click('button[data-action="submit"]')
    _next_task(page, first)
    expect(page.get_by_test_id("announce")).to_have_text("Saved — ranking 1 today")
    assert page.evaluate("() => window.scrollY") == 0
    assert page.evaluate("() => document.activeElement && document.activeElement.id") == "task"
    assert _in_viewport(page, ".prompt")
    assert _by_letter(db, first)["B"] == 1


def test_phone_width_names_announcements_contrast_focus(page: Page, live_server: str, db: Session) -> None:
    project = _tldr_project(db, prompts=1, k=9, extra=CODE)
    user = make_user(db)
    db.commit()
    page.set_viewport_size(PHONE)
    browser_login(page, live_server, user.email)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # the projects page
    _open(page, live_server, project)
    page.locator('.card:has(.rendered pre) button[data-action="expand"]').click()
    page.screenshot(path="/tmp/ranking-k9-390.png", full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    scrolls = page.evaluate(
        """() => [...document.querySelectorAll('.card .rendered pre')].some(el =>
              el.scrollWidth > el.clientWidth + 10 && getComputedStyle(el).overflowX === 'auto')"""
    )
    assert scrolls  # scrolls inside its block
    for letter in "ABCDEFGHI":
        expect(page.get_by_role("combobox", name=f"Rank of answer {letter}")).to_have_count(1)
        expect(page.get_by_role("button", name=f"Tie answer {letter} with the answer above")).to_have_count(1)
    card = page.locator('.card[data-letter="E"]')
    card.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")  # keyboard focus: the ring shows
    outline = card.evaluate(
        "el => [getComputedStyle(el).outlineStyle, parseFloat(getComputedStyle(el).outlineWidth)]"
    )
    assert outline[0] != "none" and outline[1] >= 2
    page.keyboard.press("t")
    expect(page.get_by_test_id("announce")).to_contain_text("Answer E tied with D")
    tied = card.evaluate("el => getComputedStyle(el).borderLeftColor")
    edge = card.evaluate("el => getComputedStyle(el).borderTopColor")
    select_edge = page.get_by_test_id("rank-E").evaluate("el => getComputedStyle(el).borderTopColor")
    white = "rgb(255, 255, 255)"
    assert _contrast(tied, white) >= 3 and _contrast(edge, white) >= 3 and _contrast(select_edge, white) >= 3


AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"


def _axe_serious(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page (injected via DevTools, so CSP still holds)."""
    page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))"""
    )
    return [str(item) for item in found]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440", "390"])
def test_axe_finds_no_serious_violations(
    page: Page, live_server: str, db: Session, viewport: dict[str, int]
) -> None:
    labeling = {"flags_required": True, "likert_required": True}
    project = _tldr_project(db, prompts=1, k=9, extra=CODE, settings={"labeling": labeling})
    user = make_user(db)
    db.commit()
    page.set_viewport_size(viewport)
    browser_login(page, live_server, user.email)
    _open(page, live_server, project)
    page.keyboard.type("b=a")
    assert _axe_serious(page) == []
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("submit-errors")).to_contain_text("Flags")
    page.click("[data-action=help]")
    assert _axe_serious(page) == []


def test_progress_page_fits_phone(page: Page, live_server: str, db: Session) -> None:
    project = _tldr_project(db, prompts=2, k=9)
    annotator, admin = make_user(db), make_user(db, role="admin")
    task = service.next_task(db, project, annotator)
    assert task is not None
    service.submit(db, annotator, task.assignment.id, strict_ranking(task.assignment, rationale="B. " * 200))
    admin_email = admin.email
    db.commit()
    page.set_viewport_size(PHONE)
    browser_login(page, live_server, admin_email)
    page.goto(f"{live_server}/projects/{project.id}/progress")
    page.locator("details.recent summary").first.click()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
