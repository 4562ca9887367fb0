"""Login rate limits: per client address and per account, 429 + Retry-After without hashing, a locked address
costs no hash, and the login-attempt table forgets what no longer locks anything (issue 16, item 1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import app.auth.service as auth_service
from app.auth.throttle import TokenBucket
from app.main import create_app
from app.models import LoginAttempt, utcnow
from app.settings import Settings
from tests.factories import PASSWORD, csrf_from, make_user


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password check the login service runs (the expensive part a limit must spare)."""
    seen: list[str] = []
    real = auth_service.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        seen.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(auth_service, "verify_password", counting)
    return seen


def _client(settings: Settings, clean_engine, **limits: object) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(settings.model_copy(update=limits), engine=clean_engine))


@pytest.fixture
def limited(settings: Settings, clean_engine) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with _client(settings, clean_engine, login_ip_burst=3, login_ip_per_minute=1.0) as client:
        yield client


def _post(client: TestClient, email: str, password: str = "wrong password"):  # type: ignore[no-untyped-def]
    token = csrf_from(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       follow_redirects=False)


def test_per_address_limit_answers_429_without_hashing(limited: TestClient, db: Session, hashes: list[str]) -> None:
    user = make_user(db)
    db.commit()
    answers = [_post(limited, f"someone{i}@example.org").status_code for i in range(3)]
    assert answers == [401, 401, 401] and len(hashes) == 3
    refused = _post(limited, user.email, PASSWORD)
    assert refused.status_code == 429, "even the right password waits once the address has spent its budget"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Too many sign-in attempts" in refused.text
    assert len(hashes) == 3, "a refused attempt must not hash"


def test_per_account_limit_spares_other_accounts(settings: Settings, clean_engine, db: Session,  # type: ignore[no-untyped-def]
                                                 hashes: list[str]) -> None:
    target, other = make_user(db), make_user(db)
    db.commit()
    with _client(settings, clean_engine, login_account_burst=2, login_account_per_minute=1.0,
                 login_max_failures=100) as client:
        assert [_post(client, target.email).status_code for _ in range(2)] == [401, 401]
        refused = _post(client, target.email.upper())  # the same account, however it is spelt
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert len(hashes) == 2
        assert _post(client, other.email, PASSWORD).status_code == 303


def test_a_locked_address_costs_no_hash(client: TestClient, db: Session, hashes: list[str]) -> None:
    """Locked addresses, existing or not, answer alike (429) and at once: the lockout tells nothing."""
    user = make_user(db)
    db.commit()
    for email in (user.email, "nobody@example.org"):
        for _ in range(5):
            assert _post(client, email).status_code == 401
    assert len(hashes) == 10
    known, unknown = _post(client, user.email, PASSWORD), _post(client, "nobody@example.org")
    assert known.status_code == unknown.status_code == 429
    assert known.text.replace(user.email, "") == unknown.text.replace("nobody@example.org", "")
    assert len(hashes) == 10, "a locked address was hashed anyway"


def test_stale_login_attempts_are_pruned(client: TestClient, db: Session) -> None:
    long_ago = utcnow() - timedelta(days=2)
    db.add_all([
        LoginAttempt(email="old@example.org", failures=3, window_started_at=long_ago),
        LoginAttempt(email="expired-lock@example.org", failures=5, window_started_at=long_ago,
                     locked_until=long_ago + timedelta(minutes=15)),
        LoginAttempt(email="still-locked@example.org", failures=5, window_started_at=long_ago,
                     locked_until=utcnow() + timedelta(minutes=5)),
    ])
    db.commit()
    assert _post(client, "fresh@example.org").status_code == 401
    db.expire_all()
    left = set(db.scalars(select(LoginAttempt.email)))
    assert left == {"still-locked@example.org", "fresh@example.org"}
    assert db.scalar(select(func.count()).select_from(LoginAttempt)) == 2


def test_token_bucket_refills_and_bounds_its_memory() -> None:
    now = [0.0]
    bucket = TokenBucket(2, 60.0, max_keys=3, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(2)] == [0.0, 0.0]
    assert bucket.take("a") == pytest.approx(1.0)
    now[0] += 1.0
    assert bucket.take("a") == 0.0
    for key in "bcde":
        bucket.take(key)
    assert len(bucket._buckets) == 3 and "a" not in bucket._buckets
