"""Auth domain logic: users, logins with throttling, sessions, API tokens. Flushes, never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.auth import queries
from app.auth.secrets import generate_password, hash_password, new_token, token_digest, verify_password
from app.models import ApiToken, LoginAttempt, User, UserSession, utcnow
from app.models.users import ROLES

GENERIC_LOGIN_FAILURE = "Wrong e-mail or password, or too many attempts; wait a few minutes and try again."


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
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise AuthError(str(exc)) from exc
    name = (display_name or address.split("@", 1)[0]).strip()[:200] or address
    user = User(email=address, display_name=name, role=role, password_hash=password_hash, is_ai=is_ai)
    queries.add(db, user)
    return CreatedUser(user=user, password=generated)


def set_password(db: Session, user: User, password: str) -> None:
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
    """
    now = utcnow()
    address = email.strip().lower()[:320]
    attempt = queries.login_attempt(db, address)
    if _throttled(attempt, now):
        verify_password(None, password)  # same cost as a real check
        return LoginResult(None, None, GENERIC_LOGIN_FAILURE)
    user = queries.user_by_email(db, address)
    ok = verify_password(user.password_hash if user else None, password)
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
    user.is_active = active
    if not active:
        queries.delete_user_sessions(db, user.id)
    db.flush()


def create_api_token(db: Session, user: User, name: str = "") -> str:
    """A new bearer token for `user`, returned once; only its digest is stored."""
    token = new_token("pfl_")
    queries.add(db, ApiToken(user_id=user.id, name=name[:200], token_hash=token_digest(token), prefix=token[:8]))
    return token


def user_for_token(db: Session, token: str) -> User | None:
    """The active user behind a bearer token, or None."""
    found = queries.token_by_digest(db, token_digest(token))
    if found is None:
        return None
    api_token, user = found
    if api_token.revoked_at is not None or not user.is_active:
        return None
    now = utcnow()
    # Touch at most once a minute: a write per API call would serialise readers on SQLite.
    if api_token.last_used_at is None or now - api_token.last_used_at > timedelta(minutes=1):
        api_token.last_used_at = now
    return user


def get_user_by_email(db: Session, email: str) -> User:
    user = queries.user_by_email(db, email)
    if user is None:
        raise AuthError(f"no user with e-mail {email.strip().lower()}")
    return user


def list_users(db: Session) -> list[User]:
    return queries.list_users(db)


def get_user(db: Session, user_id: int) -> User | None:
    return queries.user_by_id(db, user_id)
