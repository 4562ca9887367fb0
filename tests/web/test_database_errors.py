"""Only an unreachable or busy database is answered 503 + Retry-After; a statement the database refuses for
good is a 500 with a request id and a logged traceback (issue 16, item 5: every OperationalError was an
"outage", so a request that can never pass was retried forever)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, literal, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from app.web.db_errors import is_transient
from tests.conftest import PG_ADMIN_URL


def _permanent_statement(engine: Engine) -> None:
    """Run a statement that fails with an OperationalError no retry can fix, on the live dialect."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":  # psycopg: at most 65,535 bind parameters
            conn.execute(select(literal(1)).where(literal(3).in_(list(range(70_000)))))
        else:  # SQLite reports an unknown table as an OperationalError
            conn.execute(text("SELECT nothing FROM no_such_table"))


def _caught(call: object) -> DBAPIError:
    with pytest.raises(DBAPIError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_a_refused_statement_is_a_500_with_a_request_id(app: FastAPI, clean_engine: Engine,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(_caught(lambda: _permanent_statement(clean_engine)), OperationalError)

    def refused() -> dict[str, str]:
        _permanent_statement(clean_engine)
        return {}

    app.add_api_route("/api/test-refused-statement", refused)
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR, "prefloop"):
        response = client.get("/api/test-refused-statement")
        page = client.get("/api/test-refused-statement", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 500 and "retry-after" not in response.headers
    rid = response.headers["x-request-id"]
    assert rid in response.json()["detail"]
    assert page.status_code == 500 and page.headers["x-request-id"] == "abc-123"
    logged = [r for r in caplog.records if rid in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback went to the log, not to the client
    assert "Traceback" not in response.text


def test_connection_class_errors_are_transient(dialect: str, tmp_path: Path) -> None:
    if dialect == "sqlite":
        path = tmp_path / "locked.db"
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("CREATE TABLE t (x INTEGER)")
        holder.execute("BEGIN IMMEDIATE")
        engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})

        def write() -> None:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))

        locked = _caught(write)
        holder.rollback()
        holder.close()
        assert "locked" in str(locked.orig) and is_transient(locked)
        missing = create_engine(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
        assert is_transient(_caught(lambda: missing.connect().close()))
        return
    refused = create_engine("postgresql+psycopg://x@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
    assert is_transient(_caught(lambda: refused.connect().close()))
    # The server ends the session (an admin, a restart): SQLSTATE 57P01 admin_shutdown.
    engine = create_engine(PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), pool_pre_ping=False)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            gone = _caught(lambda: conn.execute(text("SELECT 1")))
    finally:
        engine.dispose()
    assert is_transient(gone)


def test_statement_errors_are_not_transient(clean_engine: Engine) -> None:
    assert not is_transient(_caught(lambda: _permanent_statement(clean_engine)))
