"""Who may see a project, and the admin's management of its members. Never commits.

A project's `labeling.access` is "all" (every annotator, the default) or "members" (only the annotators
listed here). Admins see every project and need no membership. A non-member asking for a members-only
project is told it does not exist (404), so project ids reveal nothing (app.members.access).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.auth import queries as user_queries
from app.errors import Invalid, NotFound
from app.members import queries
from app.models import Project, ProjectMember, User
from app.projects import queries as project_queries
from app.projects.service import settings_of


def members_only(project: Project) -> bool:
    return settings_of(project).labeling.access == "members"


def may_access(db: Session, user: User, project: Project) -> bool:
    """Admins always; annotators on an open project, or as its member."""
    return user.is_admin or not members_only(project) or queries.is_member(db, project.id, user.id)


def may_access_id(db: Session, user: User, project_id: int) -> bool:
    """`may_access` by id; True for a project that does not exist (its route answers 404 itself)."""
    if user.is_admin:
        return True
    project = project_queries.get(db, project_id)
    return project is None or may_access(db, user, project)


def visible(db: Session, user: User, projects: Sequence[Project]) -> list[Project]:
    """The projects of a list the user may see, in the list's order (one query for the memberships)."""
    if user.is_admin:
        return list(projects)
    closed = [p.id for p in projects if members_only(p)]
    admitted = queries.projects_of(db, user.id, closed)
    return [p for p in projects if not members_only(p) or p.id in admitted]


@dataclass(frozen=True)
class MemberView:
    user_id: int
    email: str
    display_name: str
    role: str
    is_active: bool
    added_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {"user_id": self.user_id, "email": self.email, "display_name": self.display_name, "role": self.role,
                "is_active": self.is_active, "added_at": self.added_at.isoformat()}


def members(db: Session, project: Project) -> list[MemberView]:
    return [MemberView(u.id, u.email, u.display_name, u.role, u.is_active, m.added_at)
            for m, u in queries.members_of(db, project.id)]


def _user(db: Session, email: str) -> User:
    user = user_queries.user_by_email(db, email)
    if user is None:
        raise NotFound(f"email: no user with e-mail {email.strip().lower()}")
    return user


def add(db: Session, project: Project, email: str, by: User | None) -> tuple[MemberView, bool]:
    """Admit the user with this e-mail; (the member, whether they were added now). Idempotent."""
    user = _user(db, email)
    if user.is_admin:
        raise Invalid(f"email: {user.email} is an admin and sees every project; only annotators are members")
    row = queries.member(db, project.id, user.id)
    created = row is None
    if row is None:
        row = ProjectMember(project_id=project.id, user_id=user.id, added_by=by.id if by else None)
        queries.add(db, row)
    return MemberView(user.id, user.email, user.display_name, user.role, user.is_active, row.added_at), created


def remove(db: Session, project: Project, email: str) -> bool:
    """Take the user off the project; whether they were a member. Their rankings stay."""
    return queries.remove(db, project.id, _user(db, email).id)


def remove_id(db: Session, project: Project, user_id: int) -> bool:
    """`remove` by user id."""
    return queries.remove(db, project.id, user_id)
