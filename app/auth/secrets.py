"""Password hashing (argon2id) and opaque random tokens stored only as SHA-256."""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


@functools.cache
def _dummy_hash() -> str:
    """Verified when the e-mail is unknown, so a failed login costs the same time either way (no user
    enumeration). Made on first use, not at import: one argon2 hash would double the CLI's start-up."""
    return _hasher.hash("prefloop-timing-equaliser")


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; always does the same amount of work."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    """A fresh opaque secret, e.g. `pfl_…` for API tokens."""
    return f"{prefix}{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> str:
    """What we store for a token: its SHA-256 (tokens have 256 bits of entropy; no slow hash needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    """A one-time password printed once to whoever creates a user."""
    return secrets.token_urlsafe(15)
