"""Upload page (CSRF), API upload (Bearer), size cap, admin-only access; both answer 202 and import in the
background (tests/imports/test_background.py covers the progress and crash cases)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import ImportRecord, Prompt
from tests.factories import api_token, login, make_project, make_user
from tests.imports.waiting import finish_api, finish_page

GOOD = b"".join(
    json.dumps({"prompt": f"Question {i}?", "completions": ["a", "b", "c", "d"]}).encode() + b"\n" for i in range(3)
)


def test_upload_page_with_csrf(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    project = make_project(db)
    db.commit()
    token = login(client, admin.email)
    page = client.get(f"/projects/{project.id}/import")
    assert page.status_code == 200 and 'name="file"' in page.text
    files = {"file": ("../../x<b>.html", GOOD, "application/octet-stream")}
    refused = client.post(f"/projects/{project.id}/import", files=files, data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    started = client.post(f"/projects/{project.id}/import", files=files, data={"csrf_token": token})
    assert 'id="import-progress"' in started.text and "x_b_.html" in started.text
    done = finish_page(client, started)
    assert done.status_code == 200, done.text
    assert "<strong>3</strong> prompt(s) added" in done.text and 'id="import-progress"' not in done.text
    assert "x_b_.html" in done.text and "<b>" not in done.text
    bad = finish_page(client, client.post(
        f"/projects/{project.id}/import",
        files={"file": ("bad.jsonl", b'{"prompt": 1}\n{oops\n', "application/json")},
        data={"csrf_token": token},
    ))
    assert "Nothing imported" in bad.text and "malformed JSON" in bad.text
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Prompt)) == 3
    assert db.scalar(select(func.count()).where(ImportRecord.status == "failed")) == 1


def test_api_upload_with_token_long_format(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    project = make_project(db, k_min=2, k_max=3)
    headers = api_token(db, admin)
    db.commit()
    csv_data = b"ctx,sample,model\nP1,a,m1\nP1,b,m2\nP2,c,m1\nP2,d,m2\n"
    response = client.post(
        f"/api/projects/{project.id}/imports",
        headers=headers,
        files={"file": ("long.csv", csv_data, "text/csv")},
        data={"prompt_column": "ctx", "completion_column": "sample", "model_column": "model"},
    )
    assert response.headers["location"] == response.json()["status_url"]
    body = finish_api(client, response, headers)
    assert body["status"] == "succeeded" and body["ok"] is True
    assert body["counts"]["prompts_added"] == 2 and body["counts"]["completions_added"] == 4
    bad = finish_api(client, client.post(
        f"/api/projects/{project.id}/imports", headers=headers,
        files={"file": ("x.jsonl", b'{"prompt": ""}\n', "application/json")},
    ), headers)
    assert bad["status"] == "failed" and bad["ok"] is False and bad["errors"][0]["line"] == 1
    assert bad["detail"].startswith("nothing imported: 1 problem(s)")
    other = make_project(db, name="other")
    db.commit()
    assert client.get(f"/api/projects/{other.id}/imports/{body['import_id']}", headers=headers).status_code == 404
    assert client.post("/api/projects/999999/imports", headers=headers,
                       files={"file": ("x.jsonl", GOOD, "application/json")}).status_code == 404
    too_long = client.post(f"/api/projects/{project.id}/imports", headers=headers, data={"prompt_column": "c" * 201},
                           files={"file": ("long.csv", csv_data, "text/csv")})
    assert too_long.status_code == 422 and "prompt_column" in too_long.text


def test_upload_over_the_cap_is_413(client: TestClient, db: Session) -> None:
    admin = make_user(db, "admin")
    project = make_project(db)
    headers = api_token(db, admin)
    db.commit()
    huge = b"x" * (6 * 1024 * 1024)  # the test settings cap uploads at 5 MB
    response = client.post(f"/api/projects/{project.id}/imports", headers=headers,
                           files={"file": ("big.jsonl", huge, "application/json")})
    assert response.status_code == 413
    assert db.scalar(select(func.count()).select_from(ImportRecord)) == 0


def test_annotators_cannot_import_or_export(client: TestClient, db: Session) -> None:
    annotator = make_user(db, "annotator")
    project = make_project(db)
    headers = api_token(db, annotator)
    db.commit()
    files = {"file": ("x.jsonl", GOOD, "application/json")}
    assert client.post(f"/api/projects/{project.id}/imports", headers=headers, files=files).status_code == 403
    assert client.get(f"/api/projects/{project.id}/export", headers=headers).status_code == 403
    login(client, annotator.email)
    assert client.get(f"/projects/{project.id}/import").status_code == 403
    assert client.get(f"/projects/{project.id}/export").status_code == 403
    assert db.scalar(select(func.count()).select_from(Prompt)) == 0
