"""PREFLOOP_BASE_URL decides the cookies' Secure flag and the accepted Host headers, and a form posted over
plain http to an https deployment fails with a message that says where to sign in instead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.main import create_app
from app.settings import Settings, SettingsError
from tests.factories import PASSWORD, csrf_from, login, make_user

BASE = "https://prefloop.example.org"


@pytest.fixture
def prod_settings(settings: Settings) -> Settings:
    return Settings(**{**settings.model_dump(), "env": "prod", "base_url": BASE})


@pytest.fixture
def prod_app(prod_settings: Settings, clean_engine: Engine) -> Iterator[object]:
    yield create_app(prod_settings, engine=clean_engine)


def _set_cookies(response: object) -> dict[str, str]:
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return {header.split("=", 1)[0]: header for header in headers}


def test_settings_follow_the_base_url(settings: Settings) -> None:
    https = Settings(**{**settings.model_dump(), "base_url": "https://Labels.Example.org:8443/"})
    assert https.cookies_secure and https.public_origin == "https://Labels.Example.org:8443"
    assert https.trusted_hosts == ["labels.example.org", "localhost", "127.0.0.1", "testserver"]
    plain = Settings(**{**settings.model_dump(), "env": "prod", "base_url": "http://10.0.0.5:8000",
                        "allowed_hosts": "labels.internal, 10.0.0.6"})
    assert not plain.cookies_secure
    assert plain.trusted_hosts == ["10.0.0.5", "localhost", "127.0.0.1", "labels.internal", "10.0.0.6"]
    assert Settings(**{**settings.model_dump(), "allowed_hosts": "*"}).trusted_hosts == ["*"]


@pytest.mark.parametrize("url", ["", "prefloop.example.org", "ftp://prefloop.example.org", "https://"])
def test_a_base_url_that_is_no_address_is_refused(settings: Settings, url: str) -> None:
    with pytest.raises(SettingsError, match="PREFLOOP_BASE_URL"):
        Settings(**{**settings.model_dump(), "env": "prod", "base_url": url}).validate_for_serving()


def test_https_base_url_marks_cookies_secure(prod_app: object, db: Session) -> None:
    user = make_user(db, "admin")
    db.commit()
    with TestClient(prod_app, base_url=BASE) as client:  # type: ignore[arg-type]
        page = client.get("/login")
        assert "Secure" in _set_cookies(page)["prefloop_csrf"]
        response = client.post("/login", data={"email": user.email, "password": PASSWORD,
                                               "csrf_token": csrf_from(page.text)}, follow_redirects=False)
        assert response.status_code == 303
        assert "Secure" in _set_cookies(response)["prefloop_session"]


def test_http_base_url_leaves_cookies_plain(client: TestClient, db: Session) -> None:
    user = make_user(db, "admin")
    db.commit()
    assert "Secure" not in _set_cookies(client.get("/login"))["prefloop_csrf"]
    login(client, user.email)  # the default base URL is http://127.0.0.1:8000: plain cookies, login over http works


def test_unknown_host_is_refused(prod_app: object) -> None:
    with TestClient(prod_app, base_url="https://evil.example.net") as forged:  # type: ignore[arg-type]
        assert forged.get("/livez").status_code == 400
    with TestClient(prod_app, base_url=BASE) as client:  # type: ignore[arg-type]
        assert client.get("/livez").status_code == 200
    with TestClient(prod_app, base_url="http://127.0.0.1:8000") as probe:  # type: ignore[arg-type]
        assert probe.get("/readyz").status_code == 200  # the container's health check


def test_plain_http_login_to_an_https_deployment_says_where_to_sign_in(prod_app: object, db: Session) -> None:
    user = make_user(db, "admin")
    db.commit()
    with TestClient(prod_app, base_url="http://prefloop.example.org") as client:  # type: ignore[arg-type]
        page = client.get("/login")
        assert page.status_code == 200
        # The cookie jar, like a browser, keeps the Secure nonce cookie away from http://: the post lacks it.
        response = client.post("/login", data={"email": user.email, "password": PASSWORD,
                                               "csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert response.status_code == 403
    assert "configured for https://prefloop.example.org" in response.text
    assert "TLS proxy" in response.text
    assert "CSRF token missing or invalid" not in response.text


def test_a_bad_token_over_https_keeps_the_usual_message(prod_app: object) -> None:
    with TestClient(prod_app, base_url=BASE) as client:  # type: ignore[arg-type]
        client.get("/login")
        response = client.post("/login", data={"email": "a@example.org", "password": "x", "csrf_token": "forged"})
    assert response.status_code == 403
    assert "CSRF token missing or invalid" in response.text
    assert "configured for" not in response.text
