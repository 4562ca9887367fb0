"""Members of a project: the admin's page and API (list, add, remove). Who may see a project is decided in
app.members.service and enforced for every project route by app.members.access."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.auth.deps import ApiAdmin, CurrentAdmin, DbSession
from app.errors import DomainError
from app.members import service
from app.members.schemas import MemberIn
from app.projects import service as projects
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["members"])


def _page(request: Request, db: DbSession, project_id: int, *, status_code: int = 200, **extra: Any) -> Response:
    project = projects.get(db, project_id)
    context = {"project": project, "members": service.members(db, project),
               "members_only": service.members_only(project), "error": None, "email": "", "message": None, **extra}
    return render(request, "members/page.html", context, status_code=status_code)


@router.get("/projects/{project_id}/members", response_class=HTMLResponse)
def members_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    return _page(request, db, project_id)


@router.post("/projects/{project_id}/members", response_class=HTMLResponse)
def add_member(request: Request, project_id: Id, db: DbSession, admin: CurrentAdmin,
               email: Annotated[str, Form(max_length=320)] = "") -> Response:
    project = projects.get(db, project_id)
    try:
        member, created = service.add(db, project, email, admin)
    except DomainError as exc:
        reason = str(exc).removeprefix("email: ")
        return _page(request, db, project_id, status_code=exc.status, error=reason, email=email)
    message = f"{member.email} is now a member." if created else f"{member.email} was already a member."
    return _page(request, db, project_id, message=message)


@router.post("/projects/{project_id}/members/remove")
def remove_member(project_id: Id, db: DbSession, _admin: CurrentAdmin,
                  email: Annotated[str, Form(max_length=320)] = "") -> Response:
    service.remove(db, projects.get(db, project_id), email)
    return RedirectResponse(f"/projects/{project_id}/members", status_code=303)


@router.get("/api/projects/{project_id}/members")
def api_members(project_id: Id, db: DbSession, _admin: ApiAdmin) -> dict[str, Any]:
    """The project's access rule and its members."""
    project = projects.get(db, project_id)
    return {"access": "members" if service.members_only(project) else "all",
            "members": [m.to_dict() for m in service.members(db, project)]}


@router.post("/api/projects/{project_id}/members", status_code=201)
def api_add_member(project_id: Id, body: MemberIn, db: DbSession, admin: ApiAdmin) -> dict[str, Any]:
    """Admit an annotator (by e-mail); adding a member twice changes nothing."""
    member, created = service.add(db, projects.get(db, project_id), body.email, admin)
    return {**member.to_dict(), "created": created}


@router.delete("/api/projects/{project_id}/members/{user_id}")
def api_remove_member(project_id: Id, user_id: Id, db: DbSession, _admin: ApiAdmin) -> dict[str, Any]:
    """Take a user off the project (their rankings stay)."""
    project = projects.get(db, project_id)
    removed = service.remove_id(db, project, user_id)
    return {"user_id": user_id, "removed": removed}
