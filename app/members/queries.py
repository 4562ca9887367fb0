"""Every database read and write of project membership."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import ProjectMember, User


def is_member(db: Session, project_id: int, user_id: int) -> bool:
    stmt = select(ProjectMember.id).where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
    return db.scalar(stmt.limit(1)) is not None


def projects_of(db: Session, user_id: int, project_ids: Sequence[int]) -> set[int]:
    """Which of `project_ids` the user is a member of."""
    if not project_ids:
        return set()
    stmt = select(ProjectMember.project_id).where(ProjectMember.user_id == user_id,
                                                  ProjectMember.project_id.in_(list(project_ids)))
    return {int(p) for p in db.scalars(stmt)}


def member(db: Session, project_id: int, user_id: int) -> ProjectMember | None:
    return db.scalar(select(ProjectMember).where(ProjectMember.project_id == project_id,
                                                 ProjectMember.user_id == user_id))


def members_of(db: Session, project_id: int) -> list[tuple[ProjectMember, User]]:
    stmt = (select(ProjectMember, User).join(User, User.id == ProjectMember.user_id)
            .where(ProjectMember.project_id == project_id).order_by(User.email))
    return [(row[0], row[1]) for row in db.execute(stmt).all()]


def add(db: Session, row: ProjectMember) -> None:
    db.add(row)
    db.flush()


def remove(db: Session, project_id: int, user_id: int) -> bool:
    done = db.execute(delete(ProjectMember).where(ProjectMember.project_id == project_id,
                                                  ProjectMember.user_id == user_id))
    return bool(getattr(done, "rowcount", 0))
