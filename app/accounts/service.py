"""Accounts: changing one's password, API tokens with scope and expiry, one-time invite and reset links.

Links and tokens are random 256-bit secrets shown once; only their SHA-256 is stored. A link works once and
until it expires; a used, expired or unknown link gets the same answer, so a guess learns nothing. A new
password ends every browser session of the account (and, when asked, revokes its API tokens). Flushes,
never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.accounts import queries
from app.auth import service as auth
from app.auth.secrets import new_token, token_digest, verify_password
from app.errors import Invalid, NotFound
from app.models import AccountLink, ApiToken, User, utcnow
from app.models.enums import LinkKind
from app.models.users import ROLES, TOKEN_SCOPES

INVITE_HOURS = 72
RESET_HOURS = 24
MAX_TOKEN_DAYS = 366
_DEAD_LINK = "this link has expired or was already used; ask an admin for a new one"


@dataclass(frozen=True)
class IssuedLink:
    """A link as handed out: the path to send (with its secret, shown once) and when it stops working."""

    path: str
    expires_at: datetime
    link: AccountLink


def change_password(db: Session, user: User, current: str, new: str, *, revoke_tokens: bool = False) -> int:
    """Set a new password after checking the current one; ends every session. Returns tokens revoked."""
    if not verify_password(user.password_hash, current):
        raise Invalid("current_password: that is not your current password")
    if new == current:
        raise Invalid("new_password: choose a password different from the current one")
    return _set_password(db, user, new, revoke_tokens)


def _set_password(db: Session, user: User, password: str, revoke_tokens: bool) -> int:
    try:
        auth.set_password(db, user, password)  # also deletes the user's sessions
    except auth.AuthError as exc:
        raise Invalid(f"new_password: {exc}") from exc
    now = utcnow()
    queries.close_reset_links(db, user.id, now)
    return queries.revoke_tokens_of(db, user.id, now) if revoke_tokens else 0


def issue_reset_link(db: Session, admin: User, user: User, hours: int = RESET_HOURS) -> IssuedLink:
    """A one-time link with which `user` sets a new password (for someone who forgot theirs)."""
    if not user.is_active:
        raise Invalid(f"{user.email} is deactivated; activate the account before sending a reset link")
    if user.is_ai:
        raise Invalid(f"{user.email} is an automated annotator and signs in with a token, not a password")
    return _issue(db, AccountLink(kind=LinkKind.RESET, user_id=user.id, created_by=admin.id), "/reset/", hours)


def issue_invite(db: Session, admin: User, email: str, role: str = "annotator",
                 hours: int = INVITE_HOURS) -> IssuedLink:
    """A one-time link with which the invited person picks their name and password (no password is shown)."""
    address = auth.normalize_email(email)
    if role not in ROLES:
        raise Invalid(f"role: one of {', '.join(ROLES)}, not {role!r}")
    if auth.find_user_by_email(db, address) is not None:
        raise Invalid(f"email: {address} already has an account")
    return _issue(db, AccountLink(kind=LinkKind.INVITE, email=address, role=role, created_by=admin.id), "/invite/", hours)


def _issue(db: Session, link: AccountLink, prefix: str, hours: int) -> IssuedLink:
    if not 1 <= hours <= 24 * 30:
        raise Invalid("hours: a link lives between 1 hour and 30 days")
    secret = new_token("pfa_")
    now = utcnow()
    link.token_hash, link.created_at, link.expires_at = token_digest(secret), now, now + timedelta(hours=hours)
    queries.add(db, link)
    return IssuedLink(prefix + secret, link.expires_at, link)


def open_link(db: Session, kind: str, secret: str) -> AccountLink:
    """The usable link behind `secret`, or NotFound with one message for unknown, used and expired alike."""
    link = queries.link_by_digest(db, token_digest(secret), kind)
    if link is None or link.used_at is not None or link.expires_at <= utcnow():
        raise NotFound(_DEAD_LINK)
    return link


def redeem_reset(db: Session, secret: str, password: str, *, revoke_tokens: bool = False) -> User:
    link = open_link(db, LinkKind.RESET, secret)
    user = auth.get_user(db, link.user_id) if link.user_id is not None else None
    if user is None or not user.is_active:
        raise NotFound(_DEAD_LINK)
    _set_password(db, user, password, revoke_tokens)
    link.used_at = utcnow()
    db.flush()
    return user


def redeem_invite(db: Session, secret: str, display_name: str, password: str) -> User:
    link = open_link(db, LinkKind.INVITE, secret)
    if link.email is None or link.role is None:
        raise NotFound(_DEAD_LINK)
    try:
        created = auth.create_user(db, link.email, link.role, display_name=display_name.strip() or None,
                                   password=password)
    except auth.AuthError as exc:
        raise Invalid(f"password: {exc}" if "password" in str(exc) else str(exc)) from exc
    link.used_at = utcnow()
    db.flush()
    return created.user


def open_links(db: Session) -> list[AccountLink]:
    return queries.open_links(db, utcnow())


def withdraw_link(db: Session, link_id: int) -> None:
    if not queries.withdraw_link(db, link_id, utcnow()):
        raise NotFound(f"link {link_id} is not open")


def tokens(db: Session, user: User) -> list[ApiToken]:
    return queries.tokens_of(db, user.id)


def create_token(db: Session, user: User, name: str, scope: str = "full", days: int | None = None) -> str:
    """A new API token shown once; `read` tokens may only read; `days` limits its life (default: no expiry)."""
    if scope not in TOKEN_SCOPES:
        raise Invalid(f"scope: one of {', '.join(TOKEN_SCOPES)}, not {scope!r}")
    if days is not None and not 1 <= days <= MAX_TOKEN_DAYS:
        raise Invalid(f"days: between 1 and {MAX_TOKEN_DAYS}")
    expires = utcnow() + timedelta(days=days) if days is not None else None
    return auth.create_api_token(db, user, name.strip(), scope=scope, expires_at=expires)


def revoke_token(db: Session, actor: User, token_id: int) -> ApiToken:
    """Revoke one token: its owner may, and so may an admin. Revoking twice is a no-op."""
    found = queries.token(db, token_id)
    if found is None or (found.user_id != actor.id and not actor.is_admin):  # others' tokens do not exist
        raise NotFound(f"token {token_id} not found")
    if found.revoked_at is None:
        found.revoked_at = utcnow()
        db.flush()
    return found


def revoke_all_tokens(db: Session, user: User) -> int:
    """Revoke every live token of `user` (with "end sessions", for a lost laptop or a departure)."""
    return queries.revoke_tokens_of(db, user.id, utcnow())


def token_view(token: ApiToken) -> dict[str, Any]:
    """A token as the API and the CLI show it: never its secret, timestamps as ISO text."""

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {"id": token.id, "name": token.name, "prefix": token.prefix, "scope": token.scope,
            "created_at": when(token.created_at), "last_used_at": when(token.last_used_at),
            "expires_at": when(token.expires_at), "revoked_at": when(token.revoked_at)}
