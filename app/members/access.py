"""The membership guard of every route with a `{project_id}` in its path (attached in app.main).

It runs before the route's own dependencies, on the request's one database session: a signed-in non-admin
asking for a members-only project they are not a member of gets 404, the answer for a project that does
not exist, on pages and API alike. Signed-out requests pass through to the route's own guard (login
redirect or 401), and ids the path type will refuse are left to it.
"""

from __future__ import annotations

from fastapi import Depends, Request

from app.auth.deps import DbSession, optional_user
from app.errors import NotFound
from app.members import service

BIGINT_MAX = 2**63 - 1


def project_access(request: Request, db: DbSession) -> None:
    raw = request.path_params.get("project_id")
    if raw is None:
        return
    try:
        project_id = int(raw)
    except (TypeError, ValueError):
        return
    if not 1 <= project_id <= BIGINT_MAX:
        return
    user = optional_user(request, db)
    if user is not None and not service.may_access_id(db, user, project_id):
        raise NotFound(f"project {project_id} not found")


ProjectAccess = Depends(project_access)


def guards(paths: list[str]) -> bool:
    """Whether a router with these route paths needs the guard."""
    return any("{project_id}" in p for p in paths)
