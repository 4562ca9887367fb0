"""Shared fixtures: a migrated database per dialect (SQLite file and a fresh Postgres database), the app,
a test client, and login helpers. Every database test runs once on SQLite and once on Postgres."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.db import create_db_engine, make_session_factory
from app.main import create_app
from app.migrate import upgrade
from app.models import Base
from app.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PREFLOOP_SHARED_DATA", REPO.parent / "shared" / "data"))
PG_ADMIN_URL = os.environ.get("PREFLOOP_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DIALECTS = [d.strip() for d in os.environ.get("PREFLOOP_TEST_DIALECTS", "sqlite,postgres").split(",") if d.strip()]
# Strong enough for production settings (app.secret_strength); a fixed value, good for tests only.
TEST_SECRET = "test-only-sSR0mbsMXQu35kQLooMjhxjqp4OFNSYK1r4aNHbZoV5Y"
# An unset PREFLOOP_ENV means production; the suite and the processes it starts run as `test`.
os.environ.setdefault("PREFLOOP_ENV", "test")


def shared_data(*parts: str) -> Path:
    """A file of the real-data folder (../shared/data, or PREFLOOP_SHARED_DATA). Without it the test fails
    under CI (CI must not go green on less data) and skips elsewhere, naming the folder either way."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        message = f"real test data missing: {path} (set PREFLOOP_SHARED_DATA to the folder holding instructgpt-samples/)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _pg_url(database: str) -> str:
    return re.sub(r"/[^/]*$", f"/{database}", PG_ADMIN_URL)


@pytest.fixture(scope="session", params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database; Postgres databases are created for this run and dropped after.

    Postgres being unreachable is an error, not a skip: CI must not go green without it.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
        upgrade(url)
        yield url
        return
    name = f"prefloop_test_{uuid.uuid4().hex[:12]}"
    problem = None
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if problem:  # failed outside the except block, so pytest shows one line and no exception chain
        pytest.fail(f"cannot create a test database through PREFLOOP_TEST_PG_ADMIN_URL={PG_ADMIN_URL} ({problem}); "
                    "point it at a Postgres role that may create databases", pytrace=False)
    url = _pg_url(name)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_db_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def dialect(engine: Engine) -> str:
    return engine.dialect.name


def _wipe(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))


@pytest.fixture
def clean_engine(engine: Engine) -> Iterator[Engine]:
    """The engine, with every table emptied after the test."""
    yield engine
    _wipe(engine)


@pytest.fixture
def db(clean_engine: Engine) -> Iterator[Session]:
    """A session for arranging and checking data; tests commit explicitly."""
    session = make_session_factory(clean_engine)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        database_url=db_url,
        secret_key=TEST_SECRET,
        data_dir=tmp_path / "data",
        max_upload_mb=5,
    )


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The `prefloop` CLI (in process, or a subprocess given these variables) runs against the test settings:
    PREFLOOP_* variables set for the test and the settings cache cleared before and after it."""
    env = {"PREFLOOP_ENV": "test", "PREFLOOP_DATABASE_URL": settings.database_url, "PREFLOOP_SECRET_KEY": TEST_SECRET,
           "PREFLOOP_DATA_DIR": str(settings.data_dir), "PREFLOOP_CHECKPOINT_DIR": str(settings.checkpoint_dir)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture
def app(settings: Settings, clean_engine: Engine) -> FastAPI:
    return create_app(settings, engine=clean_engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client
