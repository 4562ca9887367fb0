"""/metrics and /openapi.json: open in dev/test; in production admins only (browser session or API token),
and /metrics also for the PREFLOOP_METRICS_TOKEN bearer, which works while the database is down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from app.main import create_app
from app.settings import Settings, SettingsError
from tests.factories import api_token, login, make_user

TOKEN = "metrics-Vd3kQ9xLr2Tb7NwYp5ZsH8cJ4mFgE6aU"
BASE = "https://prefloop.example.org"
OPS = ("/metrics", "/openapi.json")


def _client(settings: Settings, engine: Engine, **changes: object) -> TestClient:
    changed = Settings(**{**settings.model_dump(), **changes})
    return TestClient(create_app(changed, engine=engine), base_url=changed.base_url)


@pytest.fixture
def prod(settings: Settings, clean_engine: Engine) -> Iterator[TestClient]:
    with _client(settings, clean_engine, env="prod", base_url=BASE) as client:
        yield client


@pytest.fixture
def prod_with_token(settings: Settings, clean_engine: Engine) -> Iterator[TestClient]:
    with _client(settings, clean_engine, env="prod", base_url=BASE, metrics_token=TOKEN) as client:
        yield client


def test_production_hides_metrics_and_schema_from_all_but_admins(prod: TestClient, db: Session) -> None:
    admin, annotator = make_user(db, "admin"), make_user(db)
    admin_token, annotator_token = api_token(db, admin), api_token(db, annotator)
    db.commit()
    for path in OPS:
        signed_out = prod.get(path, headers={"Accept": "application/json"})
        assert signed_out.status_code == 401 and signed_out.headers["www-authenticate"].startswith("Bearer"), path
        assert prod.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401, path  # no token set
        assert prod.get(path, headers=annotator_token).status_code == 403, path
        assert prod.get(path, headers=admin_token).status_code == 200, path
    assert prod.get("/docs").status_code == 404 and prod.get("/redoc").status_code == 404
    assert prod.get("/livez").status_code == 200  # probes stay open
    assert prod.get("/readyz").status_code == 200
    login(prod, admin.email)  # an admin's browser session
    assert "prefloop_http_requests_total" in prod.get("/metrics").text
    assert "/api/projects" in prod.get("/openapi.json").json()["paths"]


def test_production_with_a_token_lets_the_scraper_in(prod_with_token: TestClient) -> None:
    missing = prod_with_token.get("/metrics", headers={"Accept": "application/json"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert prod_with_token.get("/metrics", headers={"Authorization": wrong}).status_code == 401, wrong
    ok = prod_with_token.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert "prefloop_http_requests_total" in ok.text
    # The scraper's token is for metrics only, not for the schema.
    assert prod_with_token.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_the_scraper_token_works_while_the_database_is_down(settings: Settings) -> None:
    down = create_engine("postgresql+psycopg://x@127.0.0.1:1/none", pool_pre_ping=False,
                         connect_args={"connect_timeout": 1})
    with _client(settings, down, env="prod", base_url=BASE, metrics_token=TOKEN,
                 database_url="postgresql+psycopg://x@127.0.0.1:1/none") as client:
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        # Anyone else must be looked up as an admin, which needs the database.
        assert client.get("/metrics", headers={"Authorization": "Bearer pfl_x"}).status_code == 503


def test_dev_is_open_and_a_token_set_in_dev_is_still_required(settings: Settings, clean_engine: Engine) -> None:
    with _client(settings, clean_engine) as dev:
        assert dev.get("/metrics").status_code == 200
        assert dev.get("/openapi.json").status_code == 200
    with _client(settings, clean_engine, metrics_token=TOKEN) as dev_with_token:
        assert dev_with_token.get("/metrics").status_code == 401
        assert dev_with_token.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert dev_with_token.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("token", ["short", "changeme" + " " * 10, "metrics-token-" + "m" * 24])
def test_production_refuses_a_weak_metrics_token(settings: Settings, token: str) -> None:
    weak = Settings(**{**settings.model_dump(), "env": "prod", "base_url": BASE, "metrics_token": token})
    with pytest.raises(SettingsError, match="PREFLOOP_METRICS_TOKEN"):
        weak.validate_for_serving()
