"""`hx-disable` on the containers of untrusted text holds on its own, in headless Chromium: with escaping
defeated (markup put into the real containers of the ranking page, and a fragment rendered with `|safe`
swapped in by htmx), an `hx-get` inside never fires, while the same markup outside does (issue 16).

Escaping is the first layer and is tested elsewhere (tests/browser/test_ranking_page.py); this proves the
second one, so that a template that one day marks model output safe still cannot make htmx act on it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import jinja2
import pytest
import uvicorn
from fastapi.responses import HTMLResponse
from playwright.sync_api import Page
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.main import create_app
from app.settings import Settings
from tests.browser.conftest import _DIALECT_NAMES, BROWSER_DIALECTS, _free_port, browser_login
from tests.factories import make_user
from tests.labeling.helpers import seeded_project

pytestmark = pytest.mark.browser

# A test-only template that defeats escaping on purpose, as a careless `|safe` would.
_FRAGMENT = jinja2.Environment(autoescape=True).from_string(
    '<div class="completion-body" hx-disable>{{ inside|safe }}</div><div class="outside">{{ outside|safe }}</div>'
)
_CONTAINERS = (".prompt-body[hx-disable]", ".completion-body[hx-disable]")


def _trap(name: str) -> str:
    """Markup that makes htmx request /test-canary/NAME as soon as htmx processes it."""
    return f'<span hx-get="/test-canary/{name}" hx-trigger="load" hx-swap="none">{name}</span>'


@dataclass
class CanaryServer:
    url: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture
def canary_server(settings: Settings, clean_engine: Engine, dialect: str) -> Iterator[CanaryServer]:
    """The real app plus two test-only routes: a canary that records each request, and the |safe fragment."""
    if _DIALECT_NAMES.get(dialect, dialect) not in BROWSER_DIALECTS:
        pytest.skip(f"browser tests run on {sorted(BROWSER_DIALECTS)} only")
    app = create_app(settings, engine=clean_engine)
    port = _free_port()
    server_info = CanaryServer(f"http://127.0.0.1:{port}")

    def canary(name: str) -> HTMLResponse:
        server_info.hits.append(name)
        return HTMLResponse("")

    def fragment() -> HTMLResponse:
        return HTMLResponse(_FRAGMENT.render(inside=_trap("swapped-inside"), outside=_trap("swapped-outside")))

    app.add_api_route("/test-canary/{name}", canary)
    app.add_api_route("/test-fragment", fragment)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="canary-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    ready = threading.Event()
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("canary server did not start")
        ready.wait(0.02)
    try:
        yield server_info
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _open_task(page: Page, base: str, project_id: int) -> None:
    page.goto(f"{base}/projects/{project_id}/label")
    page.wait_for_url(re.compile(rf"/projects/{project_id}/label/\d+$"))
    page.wait_for_selector("#task[data-assignment] .card")
    page.wait_for_function("() => window.htmx !== undefined")


def test_hx_disable_blocks_htmx_in_untrusted_text(page: Page, canary_server: CanaryServer, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=2)
    user = make_user(db)
    db.commit()
    base = canary_server.url
    browser_login(page, base, user.email)
    _open_task(page, base, project.id)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if "/test-canary/" in r.url else None)

    # Markup injected straight into each real container, then processed the way htmx processes any
    # content it swaps in; a control outside every container shows that the same markup does fire.
    names = page.evaluate(
        """([selectors, traps]) => {
            const names = [];
            selectors.forEach((selector, i) => document.querySelectorAll(selector).forEach((el, j) => {
                const name = `inside-${i}-${j}`;
                el.insertAdjacentHTML('beforeend', traps.replaceAll('NAME', name));
                names.push(name);
            }));
            const control = document.createElement('div');
            control.innerHTML = traps.replaceAll('NAME', 'outside');
            document.querySelector('main').appendChild(control);
            htmx.process(document.body);
            return names;
        }""",
        [list(_CONTAINERS), _trap("NAME")],
    )
    assert len(names) >= 3, names  # the prompt and at least two completions
    with page.expect_request(f"{base}/test-canary/swapped-outside"):
        # An htmx swap of a fragment whose escaping is defeated (`|safe` in a test-only template).
        page.evaluate("() => htmx.ajax('GET', '/test-fragment', {target: 'main', swap: 'beforeend'})")
    page.wait_for_function("() => document.querySelector('main .outside') !== null")
    assert f"{base}/test-canary/outside" in requested  # the control fired: the trap works
    assert "swapped-outside" in canary_server.hits and "outside" in canary_server.hits
    fired_inside = [name for name in canary_server.hits if name.startswith(("inside", "swapped-inside"))]
    assert fired_inside == [] and not [u for u in requested if "inside" in u]
