"""The ranking page and admin progress page through the app: render, submit by form (htmx and plain),
escaping, CSRF, ownership and role checks."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Assignment, Completion, Ranking
from tests.factories import login, make_user
from tests.labeling.helpers import seeded_project

HX = {"HX-Request": "true"}


def _form(html: str, csrf: str) -> dict[str, str]:
    data = {"csrf_token": csrf}
    for i, cid in enumerate(re.findall(r'name="rank_(\d+)"', html)):
        data[f"rank_{cid}"] = str(i + 1)
    return data


def test_label_page_claims_renders_and_submits(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3)
    user = make_user(db)
    db.commit()
    csrf = login(client, user.email)
    first = client.get(f"/projects/{project.id}/label", follow_redirects=False)
    assert first.status_code == 303
    url = first.headers["location"]
    page = client.get(url)
    assert page.status_code == 200 and 'id="task-form"' in page.text and page.headers["vary"] == "HX-Request"
    assert "<script>" not in page.text.split("</head>")[1]
    data = _form(page.text, csrf)
    # No CSRF token: refused, nothing stored.
    bad = client.post(url, data={k: v for k, v in data.items() if k != "csrf_token"}, headers=HX)
    assert bad.status_code == 403
    swapped = client.post(url, data=data, headers={**HX, "X-CSRF-Token": csrf})
    assert swapped.status_code == 200, swapped.text
    assert swapped.text.lstrip().startswith('<section id="task"') and "<html" not in swapped.text
    assert re.match(rf"/projects/{project.id}/label/\d+$", swapped.headers["hx-push-url"])
    assert swapped.headers["hx-push-url"] != url
    # Back button (history restore) gets a full page that explains the old task is done.
    restored = client.get(url, headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restored.text and "submitted" in restored.text
    assert db.scalar(select(func.count()).select_from(Ranking)) == 1


def test_invalid_form_is_400_fragment_and_stores_nothing(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    user = make_user(db)
    db.commit()
    csrf = login(client, user.email)
    url = client.get(f"/projects/{project.id}/label", follow_redirects=False).headers["location"]
    data = {k: ("1" if k.startswith("rank_") else v) for k, v in _form(client.get(url).text, csrf).items()}
    response = client.post(url, data=data, headers={**HX, "X-CSRF-Token": csrf})
    assert response.status_code == 400 and 'id="submit-errors"' in response.text
    assert "at least two different ranks" in response.text
    assert db.scalar(select(func.count()).select_from(Ranking)) == 0


def test_hostile_completion_is_escaped(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=2)
    completion = db.scalars(select(Completion)).first()
    assert completion is not None
    completion.text = (
        '<script>alert(1)</script><img src=x onerror=alert(2)> <a href="javascript:alert(3)">x</a>'
    )
    completion.text += ' <div hx-get="/logout" hx-trigger="load">hx</div> "><svg onload=alert(4)>'
    user = make_user(db)
    db.commit()
    login(client, user.email)
    page = client.get(f"/projects/{project.id}/label")
    body = page.text
    assert "<script>alert" not in body and "<img src=x" not in body and "<svg onload" not in body
    assert "<div hx-get" not in body and '<a href="javascript:' not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_other_annotators_task_is_404(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3)
    owner, other = make_user(db), make_user(db)
    db.commit()
    login(client, owner.email)
    url = client.get(f"/projects/{project.id}/label", follow_redirects=False).headers["location"]
    client.cookies.clear()
    csrf = login(client, other.email)
    assert client.get(url).status_code == 404
    data = {"csrf_token": csrf, "rank_1": "1"}
    assert client.post(url, data=data).status_code == 404
    assert client.post(url + "/skip", data={**data, "reason": "x"}).status_code == 404
    aid = int(url.rsplit("/", 1)[1])
    assert db.get(Assignment, aid).status == "active"  # type: ignore[union-attr]


def test_progress_page_is_admin_only(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3)
    annotator, admin = make_user(db), make_user(db, role="admin")
    db.commit()
    login(client, annotator.email)
    assert client.get(f"/projects/{project.id}/progress").status_code == 403
    client.cookies.clear()
    login(client, admin.email)
    page = client.get(f"/projects/{project.id}/progress")
    assert page.status_code == 200 and "<svg" in page.text and 'style="' not in page.text
    assert 'data-testid="needing">2<' in page.text
