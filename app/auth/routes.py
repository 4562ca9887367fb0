"""Login and logout pages."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import service
from app.auth.deps import SESSION_COOKIE, DbSession, MaybeUser
from app.web.csrf import verify_csrf
from app.web.templating import render

router = APIRouter(tags=["auth"])


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


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    db: DbSession,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    await verify_csrf(request)
    settings = request.app.state.settings
    previous = request.cookies.get(SESSION_COOKIE)
    result = service.login(
        db,
        email,
        password,
        session_hours=settings.session_hours,
        max_failures=settings.login_max_failures,
        lockout_minutes=settings.login_lockout_minutes,
        user_agent=request.headers.get("user-agent", ""),
    )
    if result.session_token is None:
        return render(
            request, "auth/login.html", {"next": _safe_next(next), "error": result.error, "email": email}, status_code=401
        )
    if previous:
        service.logout(db, previous)  # rotation: the pre-login session id never stays valid
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


@router.post("/logout")
async def logout(request: Request, db: DbSession) -> Response:
    await verify_csrf(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service.logout(db, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
