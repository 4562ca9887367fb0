"""Project pages: the list, create, edit (guidelines, K range, redundancy, lease, settings), archive."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.auth.deps import CurrentAdmin, CurrentUser, DbSession
from app.projects import service
from app.projects.schemas import ProjectCreate, ProjectUpdate
from app.web.paths import Id
from app.web.templating import render

router = APIRouter(tags=["projects"])


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors())


@router.get("/", response_class=HTMLResponse)
def home(request: Request, db: DbSession, user: CurrentUser) -> Response:
    projects = service.list_projects(db, include_archived=user.is_admin)
    return render(request, "projects/list.html", {"projects": projects})


@router.get("/projects")
def projects_alias(_user: CurrentUser) -> RedirectResponse:
    """The project list lives at `/`; `/projects` (where people look for it) leads there."""
    return RedirectResponse("/", status_code=307)


@router.get("/projects/new", response_class=HTMLResponse)
def new_project_page(request: Request, _admin: CurrentAdmin) -> Response:
    return render(request, "projects/form.html", {"project": None, "error": None, "values": ProjectCreate(name="x")})


@router.post("/projects", response_class=HTMLResponse)
def create_project(
    request: Request,
    db: DbSession,
    admin: CurrentAdmin,
    name: Annotated[str, Form(max_length=200)],
    guidelines: Annotated[str, Form(max_length=100_000)] = "",
    k_min: Annotated[int, Form()] = 4,
    k_max: Annotated[int, Form()] = 9,
    annotations_per_prompt: Annotated[int, Form()] = 1,
    lease_minutes: Annotated[int, Form()] = 30,
) -> Response:
    try:
        data = ProjectCreate(
            name=name,
            guidelines=guidelines,
            k_min=k_min,
            k_max=k_max,
            annotations_per_prompt=annotations_per_prompt,
            lease_minutes=lease_minutes,
        )
        project = service.create(db, data, admin)
    except ValidationError as exc:
        return render(
            request, "projects/form.html", {"project": None, "error": _validation_message(exc), "values": None},
            status_code=400,
        )
    except service.ProjectError as exc:
        return render(request, "projects/form.html", {"project": None, "error": str(exc), "values": None}, status_code=400)
    return RedirectResponse(f"/projects/{project.id}", status_code=303)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, project_id: Id, db: DbSession, user: CurrentUser) -> Response:
    project = service.get(db, project_id, include_archived=user.is_admin)
    if not user.is_admin:
        return RedirectResponse(f"/projects/{project.id}/label", status_code=303)
    return render(request, "projects/detail.html", {"project": project, "settings": service.settings_of(project)})


@router.get("/projects/{project_id}/edit", response_class=HTMLResponse)
def edit_project_page(request: Request, project_id: Id, db: DbSession, _admin: CurrentAdmin) -> Response:
    project = service.get(db, project_id)
    settings_json = json.dumps(service.settings_of(project).model_dump(mode="json"), indent=2)
    return render(request, "projects/form.html", {"project": project, "error": None, "settings_json": settings_json})


@router.post("/projects/{project_id}/edit", response_class=HTMLResponse)
def update_project(
    request: Request,
    project_id: Id,
    db: DbSession,
    _admin: CurrentAdmin,
    name: Annotated[str, Form(max_length=200)],
    guidelines: Annotated[str, Form(max_length=100_000)] = "",
    k_min: Annotated[int, Form()] = 4,
    k_max: Annotated[int, Form()] = 9,
    annotations_per_prompt: Annotated[int, Form()] = 1,
    lease_minutes: Annotated[int, Form()] = 30,
    settings_json: Annotated[str, Form(max_length=200_000)] = "",
    archived: Annotated[bool, Form()] = False,
) -> Response:
    project = service.get(db, project_id)
    error: str | None = None
    try:
        patch: dict[str, Any] | None = json.loads(settings_json) if settings_json.strip() else None
        if patch is not None and not isinstance(patch, dict):
            raise service.ProjectError("settings must be a JSON object of sections")
        data = ProjectUpdate(
            name=name,
            guidelines=guidelines,
            k_min=k_min,
            k_max=k_max,
            annotations_per_prompt=annotations_per_prompt,
            lease_minutes=lease_minutes,
            settings=patch,
            archived=archived,
        )
        service.update(db, project, data)
    except json.JSONDecodeError as exc:
        error = f"settings JSON, line {exc.lineno} column {exc.colno}: {exc.msg}"
    except ValidationError as exc:
        error = _validation_message(exc)
    except service.ProjectError as exc:
        error = str(exc)
    if error:
        db.rollback()
        return render(
            request,
            "projects/form.html",
            {"project": project, "error": error, "settings_json": settings_json},
            status_code=400,
        )
    return RedirectResponse(f"/projects/{project.id}", status_code=303)
