"""Every database read and write of the auth feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from app.models import ApiToken, LoginAttempt, User, UserSession


def user_by_email(db: Session, email: str) -> User | None:
    return db.scalar(select(User).where(User.email == email.strip().lower()))


def user_by_id(db: Session, user_id: int) -> User | None:
    return db.get(User, user_id)


def list_users(db: Session) -> list[User]:
    return list(db.scalars(select(User).order_by(User.id)))


def add(db: Session, obj: object) -> None:
    db.add(obj)
    db.flush()


def session_by_digest(db: Session, digest: str) -> tuple[UserSession, User] | None:
    row = db.execute(
        select(UserSession, User).join(User, User.id == UserSession.user_id).where(UserSession.token_hash == digest)
    ).first()
    return (row[0], row[1]) if row else None


def delete_session(db: Session, digest: str) -> None:
    db.execute(delete(UserSession).where(UserSession.token_hash == digest))


def delete_user_sessions(db: Session, user_id: int) -> int:
    result = db.execute(delete(UserSession).where(UserSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


def delete_expired_sessions(db: Session, now: datetime) -> None:
    db.execute(delete(UserSession).where(UserSession.expires_at < now))


def token_by_digest(db: Session, digest: str) -> tuple[ApiToken, User] | None:
    row = db.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == digest)
    ).first()
    return (row[0], row[1]) if row else None


def login_attempt(db: Session, email: str) -> LoginAttempt | None:
    return db.get(LoginAttempt, email)


def clear_login_attempts(db: Session, email: str) -> None:
    db.execute(delete(LoginAttempt).where(LoginAttempt.email == email))


def delete_stale_login_attempts(db: Session, window_started_before: datetime, now: datetime) -> None:
    """Forget failure counts whose window began before `window_started_before` and that lock nothing now."""
    db.execute(
        delete(LoginAttempt).where(
            LoginAttempt.window_started_at < window_started_before,
            or_(LoginAttempt.locked_until.is_(None), LoginAttempt.locked_until <= now),
        )
    )
