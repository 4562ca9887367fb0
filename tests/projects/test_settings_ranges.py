"""Every numeric project setting has a range, checked on write (issue 16, item 6): an out-of-range value is a
422 naming it and changes nothing, and a value stored before the check existed no longer breaks the project."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import Project
from app.projects.service import settings_of
from tests.factories import api_token, make_user
from tests.labeling.helpers import seeded_project

BAD_SETTINGS = [
    ("quality", "gold_rate", 1e-320), ("quality", "gold_rate", 0.0005), ("quality", "gold_rate", -0.1),
    ("quality", "gold_rate", 1.5), ("quality", "gold_threshold", 2),
    ("training", "kl_beta", 1000.0), ("training", "kl_beta", -1), ("training", "dpo_beta", 0),
    ("training", "kl_budget", 1e12), ("training", "rm_lr", 10.0), ("training", "policy_lr", 0),
    ("training", "policy_steps", 10**7), ("training", "rm_batch_prompts", 10**6), ("training", "rm_epochs", 0),
    ("training", "rloo_k", 1), ("sampling", "k", 1), ("sampling", "k", 17), ("sampling", "seed", -1),
    ("sampling", "seed", 2**40), ("sampling", "temperature", 6), ("sampling", "max_new_tokens", 0),
    ("schedule", "retrain_every", 0), ("schedule", "prompts_per_round", 10**8),
    ("schedule", "uncertain_share", 1.5), ("labeling", "edit_window_minutes", -1),
]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999"]


@pytest.fixture
def admin_headers(db: Session) -> dict[str, str]:
    headers = api_token(db, make_user(db, "admin"))
    db.commit()
    return headers


@pytest.mark.parametrize(("section", "field", "value"), BAD_SETTINGS,
                         ids=[f"{s}.{f}={v}" for s, f, v in BAD_SETTINGS])
def test_out_of_range_settings_are_refused_on_write(client: TestClient, db: Session, admin_headers: dict[str, str],
                                                    section: str, field: str, value: float) -> None:
    project = seeded_project(db, prompts=1, k=3)
    before = dict(project.settings)
    patch = client.patch(f"/api/projects/{project.id}", json={"settings": {section: {field: value}}},
                         headers=admin_headers)
    assert patch.status_code == 422, patch.text
    assert f"settings.{section}.{field}" in patch.json()["detail"]
    created = client.post("/api/projects", json={"name": "new", "settings": {section: {field: value}}},
                          headers=admin_headers)
    assert created.status_code == 422, created.text
    db.expire_all()
    assert db.get(Project, project.id).settings == before  # type: ignore[union-attr]


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_numbers_are_refused(client: TestClient, db: Session, admin_headers: dict[str, str],
                                        number: str) -> None:
    project = seeded_project(db, prompts=1, k=3)
    body = f'{{"settings": {{"training": {{"kl_beta": {number}}}, "quality": {{"gold_rate": {number}}}}}}}'
    response = client.patch(f"/api/projects/{project.id}", content=body,
                            headers={**admin_headers, "content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert {tuple(e["loc"][-2:]) for e in response.json()["errors"]} == {("training", "kl_beta"),
                                                                         ("quality", "gold_rate")}


@pytest.mark.parametrize(("field", "value"), [("k_min", 1), ("k_max", 17), ("annotations_per_prompt", 0),
                                              ("annotations_per_prompt", 101), ("lease_minutes", 0),
                                              ("lease_minutes", 24 * 60 + 1)])
def test_out_of_range_project_fields_are_refused(client: TestClient, db: Session, admin_headers: dict[str, str],
                                                 field: str, value: int) -> None:
    project = seeded_project(db, prompts=1, k=3)
    response = client.patch(f"/api/projects/{project.id}", json={field: value}, headers=admin_headers)
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body", field]


def test_edges_of_the_ranges_are_accepted(client: TestClient, db: Session, admin_headers: dict[str, str]) -> None:
    project = seeded_project(db, prompts=1, k=3)
    settings = {"quality": {"gold_rate": 0.001}, "training": {"kl_beta": 0, "kl_budget": 1e6},
                "sampling": {"seed": 2**32 - 1}}
    response = client.patch(f"/api/projects/{project.id}", json={"settings": settings}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["quality"]["gold_rate"] == 0.001


def test_a_setting_stored_before_the_check_no_longer_breaks_the_project(client: TestClient, db: Session) -> None:
    """Issue 16: `gold_rate: 1e-320` was accepted, then every task page of the project answered 500."""
    project = seeded_project(db, prompts=3, k=3)
    pid = project.id
    headers = api_token(db, make_user(db))
    stored = json.loads(json.dumps(settings_of(project).model_dump(mode="json")))
    stored["quality"]["gold_rate"] = 1e-320
    stored["training"]["kl_beta"] = 1e300
    db.execute(update(Project).where(Project.id == pid).values(settings=stored))
    db.commit()
    db.expire_all()
    cfg = settings_of(db.get(Project, pid))  # type: ignore[arg-type]
    assert cfg.quality.gold_rate == 0.0 and cfg.training.kl_beta == 0.02  # the defaults
    db.rollback()  # no read transaction left open (on SQLite it holds the write lock); no ORM object used below
    for _ in range(3):
        task = client.get(f"/api/projects/{pid}/tasks/next", headers=headers)
        assert task.status_code == 200, task.text
        ranks = {str(c["id"]): i + 1 for i, c in enumerate(task.json()["completions"])}
        done = client.post(f"/api/assignments/{task.json()['assignment_id']}/ranking", json={"ranks": ranks},
                           headers=headers)
        assert done.status_code == 200, done.text
    # The next write stores valid settings; the rest of what was stored is kept.
    admin_headers = api_token(db, make_user(db, "admin"))
    db.commit()
    patched = client.patch(f"/api/projects/{pid}", json={"settings": {"quality": {"gold_threshold": 0.5}}},
                           headers=admin_headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["settings"]["quality"] == {**cfg.quality.model_dump(), "gold_threshold": 0.5}
