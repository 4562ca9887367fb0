"""Login and logout pages."""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import service
from app.auth.deps import SESSION_COOKIE, DbSession, MaybeUser
from app.auth.throttle import LoginThrottle, retry_after_header
from app.web.csrf import verify_csrf
from app.web.metrics import LOGINS
from app.web.templating import render

router = APIRouter(tags=["auth"])
log = logging.getLogger("prefloop.auth")


def _log_login(request: Request, email: str, outcome: str, user_id: int | None = None) -> None:
    """One line per sign-in attempt: the address as typed and the outcome; never the password."""
    LOGINS.labels(outcome).inc()
    log.log(logging.INFO if outcome == "success" else logging.WARNING, "login %s for %s", outcome, email[:320],
            extra={"event": "auth.login", "outcome": outcome, "email": email[:320], "user_id": user_id,
                   "client": request.client.host if request.client else ""})


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes home (no open redirect)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: MaybeUser, next: str = "/") -> Response:
    if user is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "auth/login.html", {"next": _safe_next(next), "error": None})


async def _csrf_checked(request: Request) -> None:
    """The CSRF check as a dependency (reading a posted form is async), so the routes below can be sync."""
    await verify_csrf(request)


CsrfChecked = Depends(_csrf_checked)


def _login_page(request: Request, next: str, email: str, error: str, status_code: int,
                retry_after: float | None = None) -> Response:
    response = render(request, "auth/login.html", {"next": _safe_next(next), "error": error, "email": email},
                      status_code=status_code)
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after_header(retry_after)
    return response


@router.post("/login", response_class=HTMLResponse, dependencies=[CsrfChecked],
             responses={429: {"description": "too many attempts from this address or for this account"}})
async def login_submit(
    request: Request,
    db: DbSession,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Sign in. Async on purpose: admission (rate limits, a free hashing slot) is decided on the event loop
    without a thread, and only an admitted check runs — in a worker thread, at most a few at a time — so a
    flood of logins neither blocks the loop nor takes the thread pool that every other route runs in."""
    settings = request.app.state.settings
    throttle: LoginThrottle = request.app.state.login_throttle
    wait = throttle.admit(request.client.host if request.client else "", email.strip().lower()[:320])
    if wait or throttle.saturated():
        _log_login(request, email, "throttled")
        return _login_page(request, next, email, service.TOO_MANY_ATTEMPTS, 429, wait or 1.0)
    result = await anyio.to_thread.run_sync(
        partial(
            service.login,
            db,
            email,
            password,
            session_hours=settings.session_hours,
            max_failures=settings.login_max_failures,
            lockout_minutes=settings.login_lockout_minutes,
            user_agent=request.headers.get("user-agent", ""),
        ),
        limiter=throttle.hashing,
    )
    if result.session_token is None:
        if result.retry_after is not None:
            _log_login(request, email, "locked")
            return _login_page(request, next, email, result.error or "", 429, result.retry_after)
        _log_login(request, email, "failure")
        return _login_page(request, next, email, result.error or "", 401)
    _log_login(request, email, "success", result.user.id if result.user is not None else None)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        # rotation: the pre-login session id never stays valid (a quick delete, off the event loop too)
        await anyio.to_thread.run_sync(service.logout, db, previous)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        httponly=True,
        samesite="lax",
        secure=settings.cookies_secure,
        max_age=settings.session_hours * 3600,
        path="/",
    )
    return response


@router.post("/logout", dependencies=[CsrfChecked])
def logout(request: Request, db: DbSession) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service.logout(db, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
