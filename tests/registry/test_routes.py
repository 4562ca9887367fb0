"""Model pages and JSON: versions with metrics and lineage, promote and roll back, comparison → models,
object-level checks across projects and refusal for annotators."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Comparison, Completion, ModelVersion
from app.registry import service as registry
from tests.factories import api_token, login, make_project, make_prompt, make_user


def _arrange(db: Session) -> tuple[int, ModelVersion, ModelVersion, int]:
    project = make_project(db, settings={"training": {"reward_model": "/models/r", "policy_model": "/models/p"}})
    v0 = registry.ensure_base_version(db, project, "reward")
    assert v0 is not None
    prompt = make_prompt(db, project, 2)
    a, b = db.scalars(select(Completion.id).where(Completion.prompt_id == prompt.id).order_by(Completion.id)).all()
    comparison = Comparison(project_id=project.id, prompt_id=prompt.id, winner_id=a, loser_id=b, source="imported")
    db.add(comparison)
    db.flush()
    v1 = ModelVersion(project_id=project.id, kind="reward", name="reward-v1", base_model="/models/r", status="training",
                      parent_id=v0.id)
    db.add(v1)
    db.flush()
    registry.record_training(db, v1, checkpoint_path="/ckpt/1", comparison_ids=[comparison.id],
                             metrics={"heldout_accuracy": 0.75, "loss_curve": [0.7, 0.6, 0.5]})
    registry.apply_decision(db, v1, registry.Decision(False, "held-out accuracy <b>worse</b>"))
    db.commit()
    return project.id, v0, v1, comparison.id


def test_models_page_promote_and_rollback(db: Session, client: TestClient) -> None:
    project_id, v0, v1, _ = _arrange(db)
    admin = make_user(db, "admin")
    db.commit()
    csrf = login(client, admin.email)
    page = client.get(f"/projects/{project_id}/models")
    assert page.status_code == 200 and "reward-v1" in page.text and "0.750" in page.text
    assert "&lt;b&gt;worse&lt;/b&gt;" in page.text and ' style="' not in page.text
    detail = client.get(f"/projects/{project_id}/models/{v1.id}")
    assert detail.status_code == 200 and "<polyline" in detail.text and "1 comparison(s) trained this checkpoint" in detail.text
    promoted = client.post(f"/projects/{project_id}/models/{v1.id}/promote", data={"csrf_token": csrf},
                           follow_redirects=False)
    assert promoted.status_code == 303
    db.expire_all()
    assert db.get(ModelVersion, v1.id).status == "active"  # type: ignore[union-attr]
    db.commit()
    rolled = client.post(f"/projects/{project_id}/models/rollback", data={"csrf_token": csrf, "kind": "reward"},
                         follow_redirects=False)
    assert rolled.status_code == 303
    db.expire_all()
    assert db.get(ModelVersion, v0.id).status == "active"  # type: ignore[union-attr]
    db.commit()
    assert client.post(f"/projects/{project_id}/models/rollback",
                       data={"csrf_token": csrf, "kind": "reward"}).status_code == 409
    v1_id = v1.id
    other_id = make_project(db).id
    db.commit()
    assert client.get(f"/projects/{other_id}/models/{v1_id}").status_code == 404  # not this project's version


def test_models_json(db: Session, client: TestClient) -> None:
    project_id, v0, v1, comparison_id = _arrange(db)
    headers = api_token(db, make_user(db, "admin"))
    annotator = api_token(db, make_user(db, "annotator"))
    db.commit()
    listed = client.get(f"/api/projects/{project_id}/models?kind=reward", headers=headers).json()
    assert [(v["name"], v["status"], v["comparisons"]) for v in listed] == [("reward-v1", "rejected", 1),
                                                                          ("reward-v0", "active", 0)]
    one = client.get(f"/api/projects/{project_id}/models/{v1.id}", headers=headers).json()
    assert one["comparison_ids"] == [comparison_id] and one["parent_id"] == v0.id
    trained = client.get(f"/api/projects/{project_id}/comparisons/{comparison_id}/models", headers=headers).json()
    assert [v["id"] for v in trained] == [v1.id]
    assert client.post(f"/api/projects/{project_id}/models/{v1.id}/promote", json={"reason": "looks good"},
                       headers=headers).json()["status"] == "active"
    back = client.post(f"/api/projects/{project_id}/models/rollback", json={"kind": "reward"}, headers=headers)
    assert back.status_code == 200 and back.json()["id"] == v0.id
    assert client.post(f"/api/projects/{project_id}/models/rollback", json={"kind": "bogus"},
                       headers=headers).status_code == 422
    assert client.get(f"/api/projects/{project_id}/models", headers=annotator).status_code == 403
    assert client.post(f"/api/projects/{project_id}/models/{v1.id}/promote", json={},
                       headers=annotator).status_code == 403
