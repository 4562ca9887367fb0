"""Auth domain logic: users, logins with throttling, sessions, API tokens. Flushes, never commits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.auth import queries
from app.auth.passwords import password_problem
from app.auth.secrets import generate_password, hash_password, new_token, token_digest, verify_password
from app.models import ApiToken, LoginAttempt, User, UserSession, utcnow
from app.models.users import ROLES

log = logging.getLogger("prefloop.auth")

GENERIC_LOGIN_FAILURE = "Wrong e-mail or password, or too many attempts; wait a few minutes and try again."
TOO_MANY_ATTEMPTS = "Too many sign-in attempts; wait a few minutes and try again."


class AuthError(ValueError):
    """A request the auth feature refuses; the message is safe to show."""


@dataclass(frozen=True)
class CreatedUser:
    user: User
    password: str | None  # the generated one-time password, when one was generated


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    session_token: str | None
    error: str | None = None
    retry_after: float | None = None  # seconds, when the address is locked out (answered with 429)


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if "@" not in value or len(value) > 320 or value.startswith("@") or value.endswith("@"):
        raise AuthError(f"not an e-mail address: {email!r}")
    return value


def create_user(
    db: Session,
    email: str,
    role: str,
    *,
    display_name: str | None = None,
    password: str | None = None,
    is_ai: bool = False,
) -> CreatedUser:
    """Create a user. Without a password a random one-time password is generated and returned once."""
    address = normalize_email(email)
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if queries.user_by_email(db, address) is not None:
        raise AuthError(f"a user with e-mail {address} already exists")
    generated = None
    if password is None:
        generated = password = generate_password()
    elif problem := password_problem(password, address):
        raise AuthError(problem)
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise AuthError(str(exc)) from exc
    name = (display_name or address.split("@", 1)[0]).strip()[:200] or address
    user = User(email=address, display_name=name, role=role, password_hash=password_hash, is_ai=is_ai)
    queries.add(db, user)
    log.info("user %s created (%s)", address, role,
             extra={"event": "admin.user_created", "user_id": user.id, "email": address, "role": role})
    return CreatedUser(user=user, password=generated)


def set_password(db: Session, user: User, password: str) -> None:
    """Set a password the user chose (app.auth.passwords has the policy); ends every session of the user."""
    if problem := password_problem(password, user.email):
        raise AuthError(problem)
    try:
        user.password_hash = hash_password(password)
    except ValueError as exc:
        raise AuthError(str(exc)) from exc
    queries.delete_user_sessions(db, user.id)
    db.flush()


def _throttled(attempt: LoginAttempt | None, now: datetime) -> bool:
    return attempt is not None and attempt.locked_until is not None and attempt.locked_until > now


def _record_failure(db: Session, email: str, now: datetime, max_failures: int, lockout: timedelta) -> None:
    attempt = queries.login_attempt(db, email)
    if attempt is None:
        # A new row per address tried: drop the ones whose window and lockout are over, so a run of invented
        # addresses cannot grow the table beyond what the rate limits let through in one lockout period.
        queries.delete_stale_login_attempts(db, now - lockout, now)
        queries.add(db, LoginAttempt(email=email, failures=1, window_started_at=now))
        return
    if now - attempt.window_started_at > lockout:
        attempt.failures, attempt.window_started_at = 0, now
    attempt.failures += 1
    if attempt.failures >= max_failures:
        attempt.locked_until = now + lockout
    db.flush()


def login(
    db: Session,
    email: str,
    password: str,
    *,
    session_hours: int,
    max_failures: int,
    lockout_minutes: int,
    user_agent: str = "",
) -> LoginResult:
    """Check credentials and open a new session (a fresh token: the session id rotates at every login).

    Failures are recorded (and never raised) so the caller's unit of work commits the throttling state.
    A locked-out address is answered without hashing: addresses that exist and addresses that do not lock
    out alike, so the quick answer tells nothing about which exist, and a flood against it costs no CPU.

    Call it first in its unit of work: it ends the read transaction before hashing (nothing is written by
    then), because on SQLite an open transaction holds the database's write lock, and every other request
    would wait for the argon2 hash.
    """
    now = utcnow()
    address = email.strip().lower()[:320]
    attempt = queries.login_attempt(db, address)
    if attempt is not None and attempt.locked_until is not None and _throttled(attempt, now):
        return LoginResult(None, None, TOO_MANY_ATTEMPTS,
                           retry_after=(attempt.locked_until - now).total_seconds())
    found = queries.user_by_email(db, address)
    user_id, stored_hash = (found.id, found.password_hash) if found else (None, None)
    db.rollback()
    ok = verify_password(stored_hash, password)
    user = queries.user_by_id(db, user_id) if ok and user_id is not None else None
    if not ok or user is None or not user.is_active or user.is_ai:
        _record_failure(db, address, now, max_failures, timedelta(minutes=lockout_minutes))
        return LoginResult(None, None, GENERIC_LOGIN_FAILURE)
    queries.clear_login_attempts(db, address)
    queries.delete_expired_sessions(db, now)
    token = new_token("pfs_")
    queries.add(
        db,
        UserSession(
            token_hash=token_digest(token),
            user_id=user.id,
            expires_at=now + timedelta(hours=session_hours),
            user_agent=user_agent[:300],
        ),
    )
    user.last_login_at = now
    return LoginResult(user, token)


def user_for_session(db: Session, token: str) -> User | None:
    """The active user behind a session cookie, or None (unknown, expired, or user deactivated)."""
    found = queries.session_by_digest(db, token_digest(token))
    if found is None:
        return None
    session, user = found
    if session.expires_at <= utcnow() or not user.is_active:
        return None
    return user


def logout(db: Session, token: str) -> None:
    queries.delete_session(db, token_digest(token))


def revoke_sessions(db: Session, user: User) -> int:
    """End every browser session of `user` (admin revocation, password change, deactivation)."""
    return queries.delete_user_sessions(db, user.id)


def set_active(db: Session, user: User, active: bool) -> None:
    log.info("user %s %s", user.email, "activated" if active else "deactivated",
             extra={"event": "admin.user_active", "user_id": user.id, "active": active})
    user.is_active = active
    if not active:
        queries.delete_user_sessions(db, user.id)
    db.flush()


def create_api_token(db: Session, user: User, name: str = "", *, scope: str = "full",
                     expires_at: datetime | None = None) -> str:
    """A new bearer token for `user`, returned once; only its digest is stored. `read` tokens only read."""
    token = new_token("pfl_")
    queries.add(db, ApiToken(user_id=user.id, name=name[:200], token_hash=token_digest(token), prefix=token[:8],
                             scope=scope, expires_at=expires_at))
    return token


@dataclass(frozen=True)
class TokenAccess:
    """Who a bearer token acts for, and what it may do (`full`, or `read`: GET and HEAD only)."""

    user: User
    scope: str


def token_access(db: Session, token: str) -> TokenAccess | None:
    """The active user behind a live bearer token (not revoked, not expired) and the token's scope, or None."""
    found = queries.token_by_digest(db, token_digest(token))
    if found is None:
        return None
    api_token, user = found
    now = utcnow()
    if api_token.revoked_at is not None or not user.is_active:
        return None
    if api_token.expires_at is not None and api_token.expires_at <= now:
        return None
    # Touch at most once a minute: a write per API call would serialise readers on SQLite.
    if api_token.last_used_at is None or now - api_token.last_used_at > timedelta(minutes=1):
        api_token.last_used_at = now
    return TokenAccess(user, api_token.scope)


def user_for_token(db: Session, token: str) -> User | None:
    """The active user behind a live bearer token, or None."""
    access = token_access(db, token)
    return access.user if access else None


def find_user_by_email(db: Session, email: str) -> User | None:
    return queries.user_by_email(db, email)


def get_user_by_email(db: Session, email: str) -> User:
    user = queries.user_by_email(db, email)
    if user is None:
        raise AuthError(f"no user with e-mail {email.strip().lower()}")
    return user


def list_users(db: Session) -> list[User]:
    return queries.list_users(db)


def get_user(db: Session, user_id: int) -> User | None:
    return queries.user_by_id(db, user_id)
