"""The reads the demo seed makes that no feature's service offers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import User


def admin_exists(db: Session) -> bool:
    """Whether any user has the admin role."""
    return db.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None
