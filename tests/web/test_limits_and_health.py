"""Request limits (RELIABILITY 9, 16), health endpoints, and the 503 answer while the database is down (24)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.main import create_app
from app.settings import Settings
from tests.factories import csrf_from, login, make_user


def test_oversized_body_refused_from_content_length(client: TestClient) -> None:
    response = client.post("/login", content=b"x" * (1024 * 1024 + 10), headers={"content-type": "text/plain"})
    assert response.status_code == 413
    assert "too large" in response.text


def test_oversized_streamed_body_refused_without_content_length(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536

    response = client.post("/login", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


def test_multipart_field_flood_is_400(client: TestClient, db: Session) -> None:
    user = make_user(db, "admin")
    db.commit()
    login(client, user.email)
    token = csrf_from(client.get("/").text)
    fields = {f"f{i}": "v" for i in range(3000)}
    fields["csrf_token"] = token
    response = client.post("/projects", files={k: (None, v) for k, v in fields.items()})
    assert response.status_code == 400


def test_huge_field_without_filename_is_refused(client: TestClient, db: Session) -> None:
    user = make_user(db, "admin")
    db.commit()
    login(client, user.email)
    # Over the form cap the body never reaches the parser: 413 while streaming, memory bounded.
    response = client.post("/projects", files={"name": (None, "z" * (2 * 1024 * 1024))})
    assert response.status_code == 413


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/livez").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "prefloop_http_requests_total" in metrics.text


def test_database_down_answers_503_with_retry_after(settings: Settings) -> None:
    # A Postgres URL nobody listens on stands for a database that went away.
    down = Settings(**{**settings.model_dump(), "database_url": "postgresql+psycopg://x@127.0.0.1:1/none"})
    engine = create_engine(down.database_url, pool_pre_ping=False, connect_args={"connect_timeout": 1})
    app = create_app(down, engine=engine)
    with TestClient(app) as client:
        response = client.get("/api/projects", headers={"Authorization": "Bearer pfl_x"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert client.get("/readyz").status_code == 503
