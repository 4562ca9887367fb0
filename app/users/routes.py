"""Admin pages for people: list users, create one (one-time password shown once), deactivate, end sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth import service
from app.auth.deps import CurrentAdmin, DbSession
from app.web.templating import render

router = APIRouter(prefix="/admin/users", tags=["users"])


@router.get("", response_class=HTMLResponse)
def users_page(request: Request, db: DbSession, _admin: CurrentAdmin) -> Response:
    return render(request, "users/list.html", {"users": service.list_users(db), "created": None, "error": None})


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
        return render(
            request, "users/list.html", {"users": service.list_users(db), "created": None, "error": str(exc)},
            status_code=400,
        )
    return render(request, "users/list.html", {"users": service.list_users(db), "created": created, "error": None})


@router.post("/{user_id}/active")
def set_active(
    user_id: int, db: DbSession, admin: CurrentAdmin, active: Annotated[bool, Form()] = False
) -> Response:
    user = service.get_user(db, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    if user.id == admin.id and not active:
        raise HTTPException(status_code=400, detail="You cannot deactivate yourself.")
    service.set_active(db, user, active)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/{user_id}/revoke-sessions")
def revoke_sessions(user_id: int, db: DbSession, _admin: CurrentAdmin) -> Response:
    user = service.get_user(db, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    service.revoke_sessions(db, user)
    return RedirectResponse("/admin/users", status_code=303)
