"""The route dependency that loads the project named by a path's `{project_id}` (404 when there is none).

Routes declare it after their role guard (`CurrentAdmin`, `ApiAdmin`, ...), so a signed-out caller is sent
to sign in before any project is looked up; the membership guard (app.members.access) has run before both.
Archived projects are included: the routes that use it are the admin's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.auth.deps import DbSession
from app.models import Project
from app.projects import service
from app.web.paths import Id


def path_project(project_id: Id, db: DbSession) -> Project:
    return service.get(db, project_id)


PathProject = Annotated[Project, Depends(path_project)]
