"""Admin pages for people: list users, invite by one-time link (or create with a one-time password), send a
password-reset link, deactivate, end sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.accounts import service as accounts
from app.auth import service
from app.auth.deps import CurrentAdmin, DbSession
from app.errors import Invalid, NotFound
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(prefix="/admin/users", tags=["users"])


def _page(request: Request, db: DbSession, *, status_code: int = 200, **extra: object) -> Response:
    context = {"users": service.list_users(db), "links": accounts.open_links(db), "created": None, "error": None,
               "issued": None, "base_url": request.app.state.settings.base_url.rstrip("/"), **extra}
    return render(request, "users/list.html", context, status_code=status_code)


@router.get("", response_class=HTMLResponse)
def users_page(request: Request, db: DbSession, _admin: CurrentAdmin) -> Response:
    return _page(request, db)


@router.post("/invite", response_class=HTMLResponse)
def invite(
    request: Request,
    db: DbSession,
    admin: CurrentAdmin,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=16)] = "annotator",
) -> Response:
    """A one-time link (valid 72 hours) with which the invited person picks their name and password."""
    try:
        issued = accounts.issue_invite(db, admin, email, role)
    except (Invalid, service.AuthError) as exc:  # AuthError: not an e-mail address
        return _page(request, db, status_code=400, error=str(exc))
    return _page(request, db, issued=issued, issued_for=issued.link.email, issued_kind="invitation")


@router.post("/{user_id}/reset-link", response_class=HTMLResponse)
def reset_link(request: Request, user_id: Id, db: DbSession, admin: CurrentAdmin) -> Response:
    """A one-time link (valid 24 hours) with which the user sets a new password."""
    user = service.get_user(db, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    try:
        issued = accounts.issue_reset_link(db, admin, user)
    except Invalid as exc:
        return _page(request, db, status_code=400, error=str(exc))
    return _page(request, db, issued=issued, issued_for=user.email, issued_kind="password-reset link")


@router.post("/links/{link_id}/withdraw")
def withdraw_link(link_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    accounts.withdraw_link(db, link_id)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("", response_class=HTMLResponse)
def create_user(
    request: Request,
    db: DbSession,
    _admin: CurrentAdmin,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=16)] = "annotator",
    display_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        created = service.create_user(db, email, role, display_name=display_name or None)
    except service.AuthError as exc:
        return _page(request, db, status_code=400, error=str(exc))
    return _page(request, db, created=created)


@router.post("/{user_id}/active")
def set_active(
    user_id: Id, db: DbSession, admin: CurrentAdmin, active: Annotated[bool, Form()] = False
) -> Response:
    user = service.get_user(db, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if user.id == admin.id and not active:
        raise Invalid("You cannot deactivate yourself: another admin can.")
    service.set_active(db, user, active)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/{user_id}/revoke-sessions")
def revoke_sessions(
    user_id: Id, db: DbSession, _admin: CurrentAdmin, revoke_tokens: Annotated[bool, Form()] = False
) -> Response:
    """End every browser session of the user; with `revoke_tokens`, their API tokens stop working too."""
    user = service.get_user(db, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    service.revoke_sessions(db, user)
    if revoke_tokens:
        accounts.revoke_all_tokens(db, user)
    return RedirectResponse("/admin/users", status_code=303)
