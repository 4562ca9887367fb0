"""FastAPI dependencies that authenticate a request and enforce roles and CSRF on every route.

Browser routes use `require_user` / `require_admin` (cookie session, CSRF on unsafe methods, redirect to
the login page when signed out). JSON API routes use `api_user` / `api_admin` (a Bearer token, or the
browser session plus a CSRF header; 401 when neither).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from app.auth import service
from app.db import unit_of_work
from app.errors import Forbidden, Unauthorized
from app.models import User
from app.web.csrf import verify_csrf

SESSION_COOKIE = "prefloop_session"


def get_session(request: Request) -> Iterator[Session]:
    """One session and one transaction per request, committed before the response (rolled back on error)."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    with unit_of_work(factory) as session:
        yield session


DbSession = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Viewer:
    """What templates know about the signed-in user; a plain copy that stays valid after a rollback."""

    id: int
    email: str
    display_name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class LoginRequired(Unauthorized):
    """Raised on a browser route without a valid session: the 401 of the vocabulary, which app.web.errors
    answers with a redirect to /login (an API caller, or a JSON request, gets the 401 itself)."""


def _resolve(request: Request, db: Session) -> User | None:
    if hasattr(request.state, "user"):
        return request.state.user  # type: ignore[no-any-return]
    user: User | None = None
    method: str | None = None
    authorization = request.headers.get("authorization", "")
    scope = None
    if authorization.lower().startswith("bearer "):
        access = service.token_access(db, authorization[7:].strip())
        user, scope = (access.user, access.scope) if access else (None, None)
        method = "token" if user else "bad-token"
    elif SESSION_COOKIE in request.cookies:
        user = service.user_for_session(db, request.cookies[SESSION_COOKIE])
        method = "session" if user else None
    request.state.user = user
    request.state.viewer = Viewer(user.id, user.email, user.display_name, user.role) if user else None
    request.state.auth_method = method
    request.state.token_scope = scope
    return user


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _check_scope(request: Request) -> None:
    if getattr(request.state, "token_scope", None) == "read" and request.method not in _READ_METHODS:
        raise Forbidden("This API token is read-only; use a token with full scope.")


def optional_user(request: Request, db: DbSession) -> User | None:
    """The signed-in user, if any. A sync dependency, so its queries run in the thread pool."""
    return _resolve(request, db)


MaybeUser = Annotated[User | None, Depends(optional_user)]


async def require_user(request: Request, user: MaybeUser) -> User:
    """A signed-in browser user; CSRF checked on unsafe methods."""
    if user is None:
        raise LoginRequired
    if request.state.auth_method == "session":
        await verify_csrf(request)
    _check_scope(request)
    return user


async def require_admin(user: Annotated[User, Depends(require_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("This page is for admins.")
    return user


async def api_user(request: Request, user: MaybeUser) -> User:
    """A JSON API caller: Bearer token, or a browser session with a CSRF header."""
    if user is None:
        raise Unauthorized("Authentication required: send 'Authorization: Bearer <token>'.",
                           headers={"WWW-Authenticate": "Bearer"})
    if request.state.auth_method == "session":
        await verify_csrf(request)
    _check_scope(request)
    return user


async def api_admin(user: Annotated[User, Depends(api_user)]) -> User:
    if not user.is_admin:
        raise Forbidden("This endpoint is for admins.")
    return user


def _presents_token(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(),
                                                                              token.encode())


def require_operator(request: Request, *, open_in_dev: bool, scraper_token: str = "") -> None:
    """Guard of the operational endpoints (/metrics, /openapi.json): they name every route, so outside dev
    only an admin (browser session or API token) or, where given, the scraper's bearer token gets them.

    The scraper token is compared before any database work, so Prometheus still scrapes during an outage.
    """
    if _presents_token(request, scraper_token):
        return
    if open_in_dev and request.app.state.settings.is_dev:
        return
    factory: sessionmaker[Session] = request.app.state.session_factory
    with unit_of_work(factory) as db:
        user = _resolve(request, db)
    if user is None:
        raise Unauthorized("Authentication required: an admin, or the metrics bearer token.",
                           headers={"WWW-Authenticate": 'Bearer realm="prefloop"'})
    if not user.is_admin:
        raise Forbidden("This endpoint is for admins.")


CurrentUser = Annotated[User, Depends(require_user)]
CurrentAdmin = Annotated[User, Depends(require_admin)]
ApiUser = Annotated[User, Depends(api_user)]
ApiAdmin = Annotated[User, Depends(api_admin)]
