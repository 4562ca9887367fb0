"""JSON API for projects: create, read, list, partial update (settings merge)."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth.deps import ApiAdmin, ApiUser, DbSession
from app.members import service as members
from app.projects import service
from app.projects.schemas import ProjectCreate, ProjectOut, ProjectUpdate
from app.web.paths import Id

router = APIRouter(prefix="/api/projects", tags=["projects"])


@router.post("", status_code=201, response_model=ProjectOut)
def create_project(data: ProjectCreate, db: DbSession, admin: ApiAdmin) -> ProjectOut:
    project = service.create(db, data, admin)  # a name already taken is a 409
    return ProjectOut.model_validate(project)


@router.get("", response_model=list[ProjectOut])
def list_projects(db: DbSession, user: ApiUser) -> list[ProjectOut]:
    listed = members.visible(db, user, service.list_projects(db, include_archived=user.is_admin))
    return [ProjectOut.model_validate(p) for p in listed]


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(project_id: Id, db: DbSession, user: ApiUser) -> ProjectOut:
    project = service.get(db, project_id, include_archived=user.is_admin)
    return ProjectOut.model_validate(project)


@router.patch("/{project_id}", response_model=ProjectOut)
def update_project(project_id: Id, data: ProjectUpdate, db: DbSession, _admin: ApiAdmin) -> ProjectOut:
    project = service.get(db, project_id)
    service.update(db, project, data)  # a setting it cannot honour is a 422
    return ProjectOut.model_validate(project)
