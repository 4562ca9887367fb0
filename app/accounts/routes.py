"""Account pages and API: one's own password and tokens, and the one-time invite and reset link pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from app.accounts import service
from app.auth.deps import SESSION_COOKIE, ApiUser, CurrentUser, DbSession
from app.errors import Invalid, NotFound
from app.models import User
from app.web.csrf import verify_csrf
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["accounts"])
# The secret of a link in its path: 43 URL-safe characters after `pfa_`; anything much longer is no link.
Secret = Annotated[str, PathParam(max_length=100)]


async def _csrf_checked(request: Request) -> None:
    await verify_csrf(request)


CsrfChecked = Depends(_csrf_checked)


def _account_page(request: Request, db: DbSession, user: User, *, status_code: int = 200,
                  **extra: Any) -> Response:
    context = {"tokens": service.tokens(db, user), "new_token": None, "errors": {}, "message": None, **extra}
    return render(request, "accounts/account.html", context, status_code=status_code)


def _field_errors(exc: Invalid) -> dict[str, str]:
    """`field: reason` messages of an Invalid, keyed by field, for the form that sent them."""
    field, _, reason = str(exc).partition(": ")
    return {field: reason} if reason else {"form": str(exc)}


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, db: DbSession, user: CurrentUser) -> Response:
    return _account_page(request, db, user)


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    db: DbSession,
    user: CurrentUser,
    current_password: Annotated[str, Form(max_length=1024)],
    new_password: Annotated[str, Form(max_length=1024)],
    confirm_password: Annotated[str, Form(max_length=1024)],
    revoke_tokens: Annotated[bool, Form()] = False,
) -> Response:
    if new_password != confirm_password:
        return _account_page(request, db, user, status_code=400,
                             errors={"confirm_password": "the two new passwords differ"})
    try:
        revoked = service.change_password(db, user, current_password, new_password, revoke_tokens=revoke_tokens)
    except Invalid as exc:
        return _account_page(request, db, user, status_code=400, errors=_field_errors(exc))
    message = "Your password was changed and every session ended" + (
        f"; {revoked} API token(s) revoked." if revoke_tokens else ".")
    request.state.viewer = None  # signed out now: the page shows no account menu
    response = render(request, "accounts/done.html", {"message": message, "next": "/login"})
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    db: DbSession,
    user: CurrentUser,
    name: Annotated[str, Form(max_length=200)] = "",
    scope: Annotated[str, Form(max_length=16)] = "full",
    days: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    try:
        token = service.create_token(db, user, name, scope, int(days) if days.strip().isdigit() else None)
    except Invalid as exc:
        return _account_page(request, db, user, status_code=400, errors=_field_errors(exc))
    return _account_page(request, db, user, new_token=token)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(token_id: Id, db: DbSession, user: CurrentUser) -> Response:
    service.revoke_token(db, user, token_id)
    return RedirectResponse("/account", status_code=303)


def _dead_link(request: Request, exc: NotFound) -> Response:
    return render(request, "accounts/done.html", {"message": str(exc)[0].upper() + str(exc)[1:] + ".",
                                                  "next": "/login"}, status_code=404)


def _refused_link_form(request: Request, context: dict[str, Any], errors: dict[str, str]) -> Response:
    """A reset or invite form sent back with its errors (the link stays usable)."""
    return render(request, "accounts/link.html", {**context, "errors": errors}, status_code=400)


@router.get("/reset/{secret}", response_class=HTMLResponse)
def reset_page(request: Request, secret: Secret, db: DbSession) -> Response:
    try:
        service.open_link(db, "reset", secret)
    except NotFound as exc:
        return _dead_link(request, exc)
    return render(request, "accounts/link.html", {"kind": "reset", "secret": secret, "errors": {}})


@router.post("/reset/{secret}", response_class=HTMLResponse, dependencies=[CsrfChecked])
def reset_submit(
    request: Request,
    secret: Secret,
    db: DbSession,
    new_password: Annotated[str, Form(max_length=1024)],
    confirm_password: Annotated[str, Form(max_length=1024)],
    revoke_tokens: Annotated[bool, Form()] = False,
) -> Response:
    context: dict[str, Any] = {"kind": "reset", "secret": secret}
    if new_password != confirm_password:
        return _refused_link_form(request, context, {"confirm_password": "the two passwords differ"})
    try:
        user = service.redeem_reset(db, secret, new_password, revoke_tokens=revoke_tokens)
    except NotFound as exc:
        return _dead_link(request, exc)
    except Invalid as exc:
        return _refused_link_form(request, context, _field_errors(exc))
    return render(request, "accounts/done.html",
                  {"message": f"The password of {user.email} is set. Sign in with it.", "next": "/login"})


@router.get("/invite/{secret}", response_class=HTMLResponse)
def invite_page(request: Request, secret: Secret, db: DbSession) -> Response:
    try:
        link = service.open_link(db, "invite", secret)
    except NotFound as exc:
        return _dead_link(request, exc)
    return render(request, "accounts/link.html", {"kind": "invite", "secret": secret, "email": link.email,
                                                  "role": link.role, "errors": {}})


@router.post("/invite/{secret}", response_class=HTMLResponse, dependencies=[CsrfChecked])
def invite_submit(
    request: Request,
    secret: Secret,
    db: DbSession,
    new_password: Annotated[str, Form(max_length=1024)],
    confirm_password: Annotated[str, Form(max_length=1024)],
    display_name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    context: dict[str, Any] = {"kind": "invite", "secret": secret, "display_name": display_name}
    if new_password != confirm_password:
        return _refused_link_form(request, context, {"confirm_password": "the two passwords differ"})
    try:
        user = service.redeem_invite(db, secret, display_name, new_password)
    except NotFound as exc:
        return _dead_link(request, exc)
    except Invalid as exc:
        return _refused_link_form(request, context, _field_errors(exc))
    return render(request, "accounts/done.html",
                  {"message": f"Welcome, {user.display_name}: your account {user.email} is ready. Sign in.",
                   "next": "/login"})


class TokenIn(BaseModel):
    name: str = Field("", max_length=200)
    scope: str = Field("full", max_length=16)
    days: int | None = Field(None, ge=1, le=service.MAX_TOKEN_DAYS)


@router.get("/api/tokens")
def api_tokens(db: DbSession, user: ApiUser) -> list[dict[str, Any]]:
    """The caller's API tokens (never their secrets), newest first."""
    return [service.token_view(t) for t in service.tokens(db, user)]


@router.post("/api/tokens", status_code=201)
def api_create_token(body: TokenIn, db: DbSession, user: ApiUser) -> JSONResponse:
    """A new token for the caller; the secret is in this answer only."""
    secret = service.create_token(db, user, body.name, body.scope, body.days)
    created = service.tokens(db, user)[0]
    return JSONResponse({**service.token_view(created), "token": secret}, status_code=201)


@router.delete("/api/tokens/{token_id}")
def api_revoke_token(token_id: Id, db: DbSession, user: ApiUser) -> dict[str, Any]:
    """Revoke a token (one's own; an admin: anyone's). Repeating it changes nothing."""
    return service.token_view(service.revoke_token(db, user, token_id))
