"""Quality over HTTP: the JSON API's shape, admin-only access, CSV downloads with formula cells
neutralised, the dashboard and gold pages, the recompute action (CSRF), gold marking through the API,
and position bias detected on an annotator who ranks through the labeling API in display order."""

from __future__ import annotations

import csv
import io
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Completion, Prompt, Ranking
from tests.factories import api_token, login, make_user
from tests.quality.db_helpers import by_id, by_id_reversed, rank_all, seeded_project


def _ranked_project(db: Session, names: tuple[str, ...] = ("Ann", "Bob", "Cy")) -> tuple[object, list[object]]:
    project = seeded_project(db, prompts=3, k=3, n=len(names))
    users = [make_user(db) for _ in names]
    for u, name in zip(users, names, strict=True):
        u.display_name = name
    db.commit()
    rank_all(db, project, users, [by_id] * (len(names) - 1) + [by_id_reversed])
    return project, users


def test_quality_api_shape(client: TestClient, db: Session) -> None:
    project, users = _ranked_project(db)
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    db.commit()
    response = client.get(f"/api/projects/{project.id}/quality", headers=headers)  # type: ignore[attr-defined]
    assert response.status_code == 200
    data = response.json()
    assert {"pairwise_agreement", "kendall_tau_b", "krippendorff_alpha", "n_prompts_multi"} <= set(data["agreement"])
    assert data["agreement"]["n_prompts_multi"] == 3
    assert len(data["annotators"]) == 3
    for row in data["annotators"]:
        assert {"id", "rankings", "median_seconds", "trust", "gold_accuracy", "position_bias",
                "length_rank_corr", "name"} <= set(row)
        assert row["rankings"] == 3 and row["median_seconds"] == 30.0
    assert [r["name"] for r in data["leaderboard"]][:1] == ["m0"]
    assert {"name", "score", "ci_low", "ci_high"} <= set(data["leaderboard"][0])
    assert data["reward_models"] == []


def test_annotators_are_refused(client: TestClient, db: Session) -> None:
    project, _ = _ranked_project(db)
    annotator = make_user(db)
    headers = api_token(db, annotator)
    prompt_id = db.scalar(select(Prompt.id))
    db.commit()
    pid = project.id  # type: ignore[attr-defined]
    assert client.get(f"/api/projects/{pid}/quality", headers=headers).status_code == 403
    assert client.post(f"/api/projects/{pid}/quality/weights", headers=headers).status_code == 403
    assert client.put(f"/api/prompts/{prompt_id}/gold", json={"spec": [{"last": "A"}]}, headers=headers).status_code == 403
    assert client.get(f"/api/projects/{pid}/quality").status_code == 401
    login(client, annotator.email)
    for path in (f"/projects/{pid}/quality", f"/projects/{pid}/quality/annotators.csv", f"/projects/{pid}/quality/gold"):
        assert client.get(path).status_code == 403, path
    assert db.scalar(select(Prompt.is_gold).where(Prompt.id == prompt_id)) is False


def test_csv_downloads_neutralise_formulas(client: TestClient, db: Session) -> None:
    project, _ = _ranked_project(db, names=("=HYPERLINK(\"http://x\")", "+1+1", "Plain"))
    for c in db.scalars(select(Completion)):
        if c.model_name == "m1":
            c.model_name = "@SUM(A1)"
    admin = make_user(db, "admin")
    db.commit()
    login(client, admin.email)
    pid = project.id  # type: ignore[attr-defined]
    response = client.get(f"/projects/{pid}/quality/annotators.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    names = {row["name"] for row in csv.DictReader(io.StringIO(response.text))}
    assert names == {"'=HYPERLINK(\"http://x\")", "'+1+1", "Plain"}
    board = list(csv.DictReader(io.StringIO(client.get(f"/projects/{pid}/quality/leaderboard.csv").text)))
    assert "'@SUM(A1)" in {r["name"] for r in board}
    assert float(board[-1]["score"]) < 0  # numbers stay numbers
    for table in ("agreement", "reward_models"):
        assert client.get(f"/projects/{pid}/quality/{table}.csv").status_code == 200
    assert client.get(f"/projects/{pid}/quality/secrets.csv").status_code == 404


def test_dashboard_and_gold_pages_render(client: TestClient, db: Session) -> None:
    project, _ = _ranked_project(db, names=("<script>alert(1)</script>", "Bob", "Cy"))
    admin = make_user(db, "admin")
    db.commit()
    login(client, admin.email)
    pid = project.id  # type: ignore[attr-defined]
    page = client.get(f"/projects/{pid}/quality")
    assert page.status_code == 200
    html = page.text
    assert html.count("<svg") == 3 and "Agreement over time" in html and "Consensus browser" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"\sstyle=", html)
    assert "unsafe-inline" not in page.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    fragment = client.get(f"/projects/{pid}/quality?page=1", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<section class="card" id="consensus">')
    gold = client.get(f"/projects/{pid}/quality/gold")
    assert gold.status_code == 200 and "Generate gold items" in gold.text


def test_recompute_weights_needs_csrf_and_stores_weights(client: TestClient, db: Session) -> None:
    project, users = _ranked_project(db, names=("A", "B", "C", "D"))
    admin = make_user(db, "admin")
    db.commit()
    token = login(client, admin.email)
    pid = project.id  # type: ignore[attr-defined]
    assert client.post(f"/projects/{pid}/quality/weights", follow_redirects=False).status_code == 403
    assert set(db.scalars(select(Ranking.weight))) == {1.0}
    db.rollback()  # SQLite: every transaction takes the write lock; release it before the app writes
    done = client.post(f"/projects/{pid}/quality/weights", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    db.expire_all()
    bad = users[-1].id  # type: ignore[attr-defined]
    assert set(db.scalars(select(Ranking.weight).where(Ranking.annotator_id == bad))) == {0.1}
    db.rollback()
    assert "Trust weights recomputed" in client.get(done.headers["location"]).text


def test_gold_api_marks_and_rejects(client: TestClient, db: Session) -> None:
    project, _ = _ranked_project(db)
    admin = make_user(db, "admin")
    headers = api_token(db, admin)
    prompt = db.scalars(select(Prompt).order_by(Prompt.id)).first()
    assert prompt is not None
    ids = sorted(db.scalars(select(Completion.id).where(Completion.prompt_id == prompt.id)))
    db.commit()
    ok = client.put(f"/api/prompts/{prompt.id}/gold", json={"spec": [{"better": "A", "worse": "C"}]}, headers=headers)
    assert ok.status_code == 200 and ok.json()["gold_spec"] == {"constraints": [{"better": ids[0], "worse": ids[2]}]}
    bad = client.put(f"/api/prompts/{prompt.id}/gold", json={"spec": [{"better": "A", "worse": "Q"}]}, headers=headers)
    assert bad.status_code == 422 and "not a completion" in bad.json()["detail"]
    assert client.put("/api/prompts/999999/gold", json={"spec": []}, headers=headers).status_code == 404
    made = client.post(f"/api/projects/{project.id}/gold/generate", json={"count": 1}, headers=headers)  # type: ignore[attr-defined]
    assert made.status_code == 200 and len(made.json()["created"]) == 1
    assert client.delete(f"/api/prompts/{prompt.id}/gold", headers=headers).json()["is_gold"] is False


def test_position_bias_detected_through_the_labeling_api(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=30, k=4, n=2)
    lazy, careful, admin = make_user(db), make_user(db), make_user(db, "admin")
    lazy_h, careful_h, admin_h = api_token(db, lazy), api_token(db, careful), api_token(db, admin)
    db.commit()
    for headers, prefer_first in ((lazy_h, True), (careful_h, False)):
        while True:
            task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers)
            if task.status_code == 204:
                break
            assert task.status_code == 200, task.text
            body = task.json()
            shown = [c["id"] for c in body["completions"]]
            order = shown if prefer_first else sorted(shown)
            ranks = {str(c): i + 1 for i, c in enumerate(order)}
            sent = client.post(f"/api/assignments/{body['assignment_id']}/ranking",
                               json={"ranks": ranks, "active_seconds": 20}, headers=headers)
            assert sent.status_code == 200, sent.text
    data = client.get(f"/api/projects/{project.id}/quality", headers=admin_h).json()
    rows = {a["id"]: a for a in data["annotators"]}
    assert rows[lazy.id]["position_bias"] == 1.0 and rows[lazy.id]["position_bias_p"] < 1e-10
    assert rows[careful.id]["position_bias"] < 0.6
    dash = {a["id"]: a for a in data["annotators"]}
    assert dash[lazy.id]["rankings"] == 30 and dash[careful.id]["rankings"] == 30
