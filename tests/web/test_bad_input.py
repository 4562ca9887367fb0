"""No 500 from ordinary bad input (issue 16, item 2, and the 422 shape): NUL and lone surrogates are refused
with 422 at the edge wherever text arrives, JSON depth is limited, ids in paths are bounded to BIGINT, a
ranking key must be a plain id, and every 422 is the documented problem document with a string `detail`."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Project, Ranking, User
from tests.factories import api_token, csrf_from, login, make_user
from tests.labeling.helpers import seeded_project

JSON = {"content-type": "application/json"}
TOO_BIG = "99999999999999999999"
MAX_ID = 2**63 - 1  # BIGINT, as app.web.paths has it


def _assert_unstorable_422(response, field: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert isinstance(problem["detail"], str) and "NUL" in problem["detail"]
    assert [e["loc"][-1] for e in problem["errors"]] == [field]


def _task(client: TestClient, project: Project, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    response = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_nul_in_the_login_email_is_a_422_and_logs_nothing(client: TestClient, db: Session,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    make_user(db, email="x@x.test")
    db.commit()
    token = csrf_from(client.get("/login").text)
    caplog.clear()  # only what the refused logins log counts
    with caplog.at_level(logging.INFO, logger="prefloop"):
        for email in ("x\x00@x.test", "x@x.test\x00"):
            response = client.post("/login", data={"email": email, "password": "x" * 12, "csrf_token": token})
            assert response.status_code == 422 and "NUL" in response.text
        multipart = client.post("/login", files={"email": (None, "x\x00@x.test"), "password": (None, "x" * 12),
                                                 "csrf_token": (None, token)})
        assert multipart.status_code == 422
    assert not caplog.records, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b", "\udfff"], ids=["nul", "high-surrogate", "low-surrogate"])
def test_unstorable_text_in_rationale_and_skip_reason(client: TestClient, db: Session, bad: str) -> None:
    project = seeded_project(db, prompts=2, k=3)
    headers = api_token(db, make_user(db))
    db.commit()
    task = _task(client, project, headers)
    ranks = {str(c["id"]): i + 1 for i, c in enumerate(task["completions"])}
    escaped = json.dumps(bad)  # the JSON text a client sends: "a\u0000b", "a\ud800b"
    body = f'{{"ranks": {json.dumps(ranks)}, "rationale": {escaped}}}'
    submitted = client.post(f"/api/assignments/{task['assignment_id']}/ranking", content=body,
                            headers={**headers, **JSON})
    _assert_unstorable_422(submitted, "rationale")
    skip_body = f'{{"reason": {escaped}}}'
    skipped = client.post(f"/api/assignments/{task['assignment_id']}/skip", content=skip_body,
                          headers={**headers, **JSON})
    _assert_unstorable_422(skipped, "reason")
    # The same task still takes a clean ranking: nothing was half-stored.
    ok = client.post(f"/api/assignments/{task['assignment_id']}/ranking", json={"ranks": ranks}, headers=headers)
    assert ok.status_code == 200, ok.text
    assert db.scalar(select(func.count()).select_from(Ranking)) == 1


def test_unstorable_text_in_names_guidelines_and_users(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    db.commit()
    _assert_unstorable_422(client.post("/api/projects", json={"name": "a\x00b"}, headers=headers), "name")
    _assert_unstorable_422(client.post("/api/projects", content='{"name": "p", "guidelines": "\\ud800"}',
                                       headers={**headers, **JSON}), "guidelines")
    token = login(client, admin.email)
    page = client.post("/projects", data={"name": "p\x00", "csrf_token": token})
    assert page.status_code == 422 and "NUL" in page.text
    user = client.post("/admin/users", data={"email": "new@example.org", "display_name": "n\x00",
                                             "csrf_token": token})
    assert user.status_code == 422
    query = client.get("/api/projects?include=%00", headers=headers)
    _assert_unstorable_422(query, "include")
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Project)) == 0
    assert db.scalar(select(func.count()).select_from(User).where(User.email == "new@example.org")) == 0


def test_json_depth_is_limited(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    headers = api_token(db, make_user(db, "admin"))
    db.commit()
    task = _task(client, project, headers)
    url = f"/api/assignments/{task['assignment_id']}/ranking"
    for body in ("[" * 100_000, "[" * 50_000 + "]" * 50_000):
        response = client.post(url, content=body, headers={**headers, **JSON})
        assert 400 <= response.status_code < 500, response.text[:300]
    bracket_bomb = client.post("/api/projects", content="[" * 100_000, headers={**headers, **JSON})
    assert 400 <= bracket_bomb.status_code < 500
    deep = '{"name": "p", "settings": {"quality": ' + '{"a": ' * 100 + "1" + "}" * 100 + "}}"
    response = client.post("/api/projects", content=deep, headers={**headers, **JSON})
    assert response.status_code == 422 and "nested deeper than 64" in response.json()["detail"]


def test_non_finite_and_oversized_numbers_are_refused(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    headers = api_token(db, make_user(db, "admin"))
    db.commit()
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = f'{{"settings": {{"training": {{"kl_beta": {number}}}}}}}'
        response = client.patch(f"/api/projects/{project.id}", content=body, headers={**headers, **JSON})
        assert response.status_code == 422, (number, response.text)
        assert response.json()["errors"][0]["loc"] == ["body", "settings", "training", "kl_beta"]
    huge = client.post(f"/api/projects/{project.id}/gold/generate", content=f'{{"seed": {MAX_ID + 1}}}',
                       headers={**headers, **JSON})
    assert huge.status_code == 422 and huge.json()["errors"][0]["type"] == "int_too_large"


def test_ranking_keys_must_be_plain_ids(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    headers = api_token(db, make_user(db))
    db.commit()
    task = _task(client, project, headers)
    ids = [c["id"] for c in task["completions"]]
    url = f"/api/assignments/{task['assignment_id']}/ranking"
    for key in (f"{ids[0]}.0", f" {ids[0]}", f"+{ids[0]}", "1e2", TOO_BIG, "0"):
        ranks = {key: 1, str(ids[1]): 2, str(ids[2]): 3}
        response = client.post(url, json={"ranks": ranks}, headers=headers)
        assert response.status_code == 400, (key, response.text)
        assert "completion ids" in response.json()["detail"]
    assert db.scalar(select(func.count()).select_from(Ranking)) == 0


def _routes(client: TestClient) -> list[tuple[str, str, APIRoute]]:
    found = []
    for context in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        if isinstance(route, APIRoute) and context.path and re.search(r"\{\w+_id\}", context.path):
            found.extend((method, context.path, route) for method in sorted(route.methods or ()))
    assert len(found) > 40, "route enumeration found too few routes with ids"
    return found


def test_ids_above_bigint_are_a_4xx_on_every_route(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    db.commit()
    token = login(client, admin.email)
    failures = []
    for method, path, _route in _routes(client):
        url = re.sub(r"\{\w+_id\}", TOO_BIG, path).replace("{table}", "comparisons")
        request_headers = headers if path.startswith("/api/") else {"X-CSRF-Token": token}
        response = client.request(method, url, headers=request_headers, follow_redirects=False)
        if not 400 <= response.status_code < 500:
            failures.append(f"{method} {url}: {response.status_code}")
    assert not failures, failures


def test_every_id_in_a_path_is_bounded_in_the_published_schema(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    unbounded = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"].endswith("_id"):
                    schema = parameter["schema"]
                    if schema.get("maximum") != MAX_ID or schema.get("minimum") != 1:
                        unbounded.append(f"{method.upper()} {path} {parameter['name']}")
    assert not unbounded, unbounded


def test_422_is_documented_as_the_problem_document_it_is(client: TestClient, db: Session) -> None:
    spec = client.get("/openapi.json").json()
    documented = [op["responses"]["422"] for item in spec["paths"].values() for op in item.values()
                  if "422" in op.get("responses", {})]
    assert documented and all(list(r["content"]) == ["application/problem+json"] for r in documented)
    problem = spec["components"]["schemas"]["Problem"]
    assert problem["properties"]["detail"] == {"type": "string"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    headers = api_token(db, make_user(db, "admin"))
    db.commit()
    sent = client.post("/api/projects", json={"name": ""}, headers=headers)
    assert sent.status_code == 422
    body = sent.json()
    assert set(body) <= set(problem["properties"]) and set(problem["required"]) <= set(body)
    assert isinstance(body["detail"], str) and "name" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "name"]


def test_a_422_from_the_labeling_api_is_the_same_problem_document(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    headers = api_token(db, make_user(db))
    db.commit()
    task = _task(client, project, headers)
    url = f"/api/assignments/{task['assignment_id']}/ranking"
    ranks = {str(c["id"]): i + 1 for i, c in enumerate(task["completions"])}
    assert client.post(url, json={"ranks": ranks, "rationale": "first"}, headers=headers).status_code == 200
    changed = client.post(url, json={"ranks": ranks, "rationale": "second"}, headers=headers)
    assert changed.status_code == 422
    assert changed.headers["content-type"].startswith("application/problem+json")
    problem = client.get("/openapi.json").json()["components"]["schemas"]["Problem"]
    body = changed.json()
    assert set(problem["required"]) <= set(body) <= set(problem["properties"])
    assert isinstance(body["detail"], str) and body["status"] == 422
