"""Every database read and write of the projects feature."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Project


def get(db: Session, project_id: int) -> Project | None:
    return db.get(Project, project_id)


def by_name(db: Session, name: str) -> Project | None:
    return db.scalar(select(Project).where(Project.name == name))


def list_all(db: Session, *, include_archived: bool) -> list[Project]:
    stmt = select(Project).order_by(Project.id)
    if not include_archived:
        stmt = stmt.where(Project.archived_at.is_(None))
    return list(db.scalars(stmt))


def add(db: Session, project: Project) -> None:
    db.add(project)
    db.flush()
