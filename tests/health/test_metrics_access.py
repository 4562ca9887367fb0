"""/metrics: open in dev, absent (404) in production until PREFLOOP_METRICS_TOKEN is set, then bearer-only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.main import create_app
from app.settings import Settings, SettingsError

TOKEN = "metrics-token-" + "m" * 24
BASE = "https://prefloop.example.org"


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


def test_production_without_a_token_hides_metrics(prod: TestClient) -> None:
    assert prod.get("/metrics").status_code == 404
    assert prod.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    assert prod.get("/livez").status_code == 200  # probes stay open
    assert prod.get("/readyz").status_code == 200


def test_production_with_a_token_wants_it(prod_with_token: TestClient) -> None:
    missing = prod_with_token.get("/metrics", headers={"Accept": "application/json"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert prod_with_token.get("/metrics", headers={"Authorization": wrong}).status_code == 401, wrong
    ok = prod_with_token.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert "prefloop_http_requests_total" in ok.text


def test_dev_is_open_and_a_token_set_in_dev_is_still_required(settings: Settings, clean_engine: Engine) -> None:
    with _client(settings, clean_engine) as dev:
        assert dev.get("/metrics").status_code == 200
    with _client(settings, clean_engine, metrics_token=TOKEN) as dev_with_token:
        assert dev_with_token.get("/metrics").status_code == 401
        assert dev_with_token.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("token", ["short", "changeme" + " " * 10])
def test_production_refuses_a_weak_metrics_token(settings: Settings, token: str) -> None:
    weak = Settings(**{**settings.model_dump(), "env": "prod", "base_url": BASE, "metrics_token": token})
    with pytest.raises(SettingsError, match="PREFLOOP_METRICS_TOKEN"):
        weak.validate_for_serving()
