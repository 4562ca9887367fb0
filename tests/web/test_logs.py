"""Structured logs (app.logs): the JSON and text formats, the request id a request's lines and answer carry
(a caller's safe X-Request-ID kept, anything else replaced), and the login lines, which never hold a password."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.logs import JsonFormatter, TextFormatter, bound_request_id, record_request_id, resolve_format
from app.settings import Settings
from tests.factories import csrf_from, make_user

SECRET_PASSWORD = "Zq8-very-secret-Password-41"


def _emit(formatter: logging.Formatter, *args: object, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("prefloop.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info(*args, extra=extra)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_lines_parse_and_carry_the_request_id_and_extra_fields() -> None:
    with bound_request_id("req-7.a_b"):
        line = _emit(JsonFormatter(), "imported %d rows", 12, import_id=3, counts={"prompts": 12})
    assert line.count("\n") == 1
    entry = json.loads(line)
    assert entry["message"] == "imported 12 rows" and entry["level"] == "INFO"
    assert entry["logger"] == "prefloop.test.logs" and entry["request_id"] == "req-7.a_b"
    assert entry["import_id"] == 3 and entry["counts"] == {"prompts": 12}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
    assert json.loads(_emit(JsonFormatter(), "outside a request"))["request_id"] is None
    # An explicit request id (a job's, from its payload) wins over the bound one.
    with bound_request_id("outer"):
        assert json.loads(_emit(JsonFormatter(), "job line", request_id="inner"))["request_id"] == "inner"


def test_json_lines_hold_the_traceback_and_stay_one_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("prefloop.test.logs.exc")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("it broke")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR" and "ValueError: bad" in entry["exception"]


def test_text_lines_are_readable() -> None:
    with bound_request_id("abc123"):
        line = _emit(TextFormatter(), "login %s", "failure", outcome="failure")
    assert re.search(r" INFO prefloop\.test\.logs \[abc123\]: login failure outcome=failure$", line.strip()), line


@pytest.mark.parametrize(("setting", "is_dev", "expected"), [
    ("auto", True, "text"), ("auto", False, "json"), ("json", True, "json"), ("text", False, "text"),
])
def test_the_format_follows_the_environment_unless_set(setting: str, is_dev: bool, expected: str) -> None:
    assert resolve_format(setting, is_dev) == expected


def test_production_settings_default_to_json(settings: Settings) -> None:
    prod = Settings(**{**settings.model_dump(), "env": "prod"})
    assert resolve_format(prod.log_format, prod.is_dev) == "json"
    assert resolve_format(settings.log_format, settings.is_dev) == "text"
    with pytest.raises(ValueError, match="log_format"):
        Settings(**{**settings.model_dump(), "log_format": "xml"})


def test_a_safe_request_id_is_echoed_and_anything_else_replaced(client: TestClient) -> None:
    assert client.get("/livez", headers={"X-Request-ID": "proxy-1.2_3"}).headers["x-request-id"] == "proxy-1.2_3"
    for bad in ("has space", "a" * 65, "quote\"d", "new%0Aline", "ünï".encode(), "", "semi;colon"):
        answered = client.get("/livez", headers={"X-Request-ID": bad}).headers["x-request-id"]  # type: ignore[dict-item]
        assert re.fullmatch(r"[0-9a-f]{16}", answered), bad
    first, second = (client.get("/livez").headers["x-request-id"] for _ in range(2))
    assert first != second and re.fullmatch(r"[0-9a-f]{16}", first)
    # Error answers carry it too (a 404 page, a 401 problem document).
    assert client.get("/no/such/page", headers={"X-Request-ID": "r404"}).headers["x-request-id"] == "r404"


def test_logins_are_logged_with_the_request_id_and_never_the_password(
    client: TestClient, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user(db, password=SECRET_PASSWORD)
    db.commit()
    caplog.set_level(logging.INFO, logger="prefloop")
    token = csrf_from(client.get("/login").text)
    wrong = client.post("/login", data={"email": user.email, "password": SECRET_PASSWORD + "x", "csrf_token": token},
                        headers={"X-Request-ID": "login-fail-1"}, follow_redirects=False)
    assert wrong.status_code == 401
    right = client.post("/login", data={"email": user.email, "password": SECRET_PASSWORD, "csrf_token": token},
                        headers={"X-Request-ID": "login-ok-1"}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["x-request-id"] == "login-ok-1"
    logins = [r for r in caplog.records if getattr(r, "event", None) == "auth.login"]
    assert [(r.outcome, r.email, record_request_id(r)) for r in logins] == [  # type: ignore[attr-defined]
        ("failure", user.email, "login-fail-1"), ("success", user.email, "login-ok-1")]
    assert logins[0].levelname == "WARNING" and logins[1].user_id == user.id  # type: ignore[attr-defined]
    as_json = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert SECRET_PASSWORD not in as_json and SECRET_PASSWORD not in caplog.text
    assert '"request_id": "login-ok-1"' in as_json
