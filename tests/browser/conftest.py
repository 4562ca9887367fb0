"""Browser-test fixtures shared by every feature: `live_server` (uvicorn in a background thread on a free
127.0.0.1 port, serving the real app on the test database) and a headless Debian Chromium via Playwright.

Browser tests run on the dialects in PREFLOOP_BROWSER_DIALECTS (default: both, "sqlite,postgres"; the pair
costs about 20 s more than one); on a dialect left out the `live_server` fixture skips.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright
from sqlalchemy import Engine

from app.main import create_app
from app.settings import Settings
from tests.factories import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
BROWSER_DIALECTS = {d.strip() for d in os.environ.get("PREFLOOP_BROWSER_DIALECTS", "sqlite,postgres").split(",")}
_DIALECT_NAMES = {"sqlite": "sqlite", "postgresql": "postgres"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(settings: Settings, clean_engine: Engine, dialect: str) -> Iterator[str]:
    """The app served by uvicorn on a free port; yields its base URL ("http://127.0.0.1:PORT")."""
    if _DIALECT_NAMES.get(dialect, dialect) not in BROWSER_DIALECTS:
        pytest.skip(f"browser tests run on {sorted(BROWSER_DIALECTS)} only")
    app = create_app(settings, engine=clean_engine)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    ready = threading.Event()
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        ready.wait(0.02)  # polling the started flag, with a deadline
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session (Debian's build; no downloaded browsers)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need Debian's chromium at {CHROMIUM}: sudo apt-get install chromium", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Console errors and uncaught page errors seen by `page` (CSP violations show up here)."""
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    """A fresh browser context and page; console errors are collected into `console_errors`."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    new_page = context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    new_page.on("console", on_console)
    new_page.on("pageerror", lambda error: console_errors.append(f"pageerror: {error}"))
    try:
        yield new_page
    finally:
        context.close()


def browser_login(page: Page, base_url: str, email: str, password: str = PASSWORD) -> None:
    """Sign in through the real login form and wait until the app has redirected away from it."""
    page.goto(f"{base_url}/login")
    page.fill('input[name="email"]', email)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_url(lambda url: "/login" not in url)


def dismiss_next_dialog(page: Page) -> list[str]:
    """Dismiss the next confirm/alert the page opens; the returned list receives its message."""
    seen: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    return seen
