"""Every database read and write of the accounts feature."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.models import AccountLink, ApiToken
from app.models.enums import LinkKind


def add(db: Session, obj: object) -> None:
    db.add(obj)
    db.flush()


def link_by_digest(db: Session, digest: str, kind: str) -> AccountLink | None:
    return db.scalar(select(AccountLink).where(AccountLink.token_hash == digest, AccountLink.kind == kind))


def open_links(db: Session, now: datetime) -> list[AccountLink]:
    """Links neither used nor expired, newest first (what an admin may still want to withdraw)."""
    return list(db.scalars(select(AccountLink).where(AccountLink.used_at.is_(None), AccountLink.expires_at > now)
                           .order_by(AccountLink.id.desc())))


def withdraw_link(db: Session, link_id: int, now: datetime) -> bool:
    done = db.execute(update(AccountLink).where(AccountLink.id == link_id, AccountLink.used_at.is_(None))
                      .values(used_at=now, expires_at=now))
    return bool(getattr(done, "rowcount", 0))


def close_reset_links(db: Session, user_id: int, now: datetime) -> None:
    """Every open reset link of a user is void once their password changed."""
    db.execute(update(AccountLink).where(AccountLink.user_id == user_id, AccountLink.kind == LinkKind.RESET,
                                         AccountLink.used_at.is_(None)).values(used_at=now))


def prune_links(db: Session, before: datetime) -> int:
    done = db.execute(delete(AccountLink).where(AccountLink.expires_at < before))
    return int(getattr(done, "rowcount", 0) or 0)


def tokens_of(db: Session, user_id: int) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id.desc())))


def token(db: Session, token_id: int) -> ApiToken | None:
    return db.get(ApiToken, token_id)


def revoke_tokens_of(db: Session, user_id: int, now: datetime) -> int:
    done = db.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                      .values(revoked_at=now))
    return int(getattr(done, "rowcount", 0) or 0)
