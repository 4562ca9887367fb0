"""`score_prompts` against a real tiny reward checkpoint, on SQLite and Postgres: a promoted reward model
(trained by the real `train_reward_model` handler) scores every candidate of the prompts still being labeled;
the scores are the checkpoint's own, land in completions.meta, and drive prompt/slot priorities, the claim
order and the "RM suggests" hint."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.jobs import queue
from app.labeling.slots import ensure_slots
from app.models import Completion, Job, ModelVersion, Prompt, Slot
from app.quality.scoring import suggestion_for
from app.quality.stats.active import ensemble_disagreement, margin_uncertainty
from app.settings import Settings
from tests.factories import api_token, make_user
from tests.worker.loop_helpers import add_ranked_prompts, tiny_loop_project
from worker.loop import WorkerConfig, run_worker
from worker.training.reward import RewardScorer

PENDING = [
    ("Give one tip for a tired traveller.", ["Sleep.", "Drink water and rest before the next trip.", "No idea, sorry."]),
    ("How do I reverse a list in Python?", ["Use reversed(xs) or xs[::-1].", "Lists cannot be reversed.", "xs.reverse()"]),
    ("Describe the weather report in one line.", ["Rain tomorrow.", "Sunny with a light wind all day.", "Cold."]),
    ("Thank the team for the quarterly budget.", ["Thanks, team!", "Thank you all for the careful budget work.",
                                                  "Budget done."]),
]


def test_score_prompts_with_a_trained_reward_checkpoint(db: Session, client: TestClient, clean_engine: Engine,
                                                        settings: Settings, tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, prompts=0, rm_epochs=2)
    project.settings = {**project.settings, "quality": {"active_selection": True, "show_rm_suggestion": True}}
    add_ranked_prompts(db, project, 6)  # what the reward model trains on (no open slots: never scored)
    pending: dict[int, list[Completion]] = {}
    for i, (text, candidates) in enumerate(PENDING):
        prompt = Prompt(project_id=project.id, external_id=f"pending-{i}", text=text, content_hash=f"s{i:063x}")
        db.add(prompt)
        db.flush()
        pending[prompt.id] = [Completion(prompt_id=prompt.id, position=j, text=c) for j, c in enumerate(candidates)]
        db.add_all(pending[prompt.id])
    db.flush()
    assert ensure_slots(db, project, list(pending)) == len(PENDING)
    headers = api_token(db, make_user(db, "annotator"))
    train_job, _ = queue.enqueue(db, "train_reward_model", project.id)
    db.commit()

    config = WorkerConfig(worker_id="t", once=True, heartbeat_seconds=0.2, stale_seconds=30, run_scheduler=False)
    assert run_worker(settings, config, engine=clean_engine) == 2  # train → (promoted) → score_prompts
    db.expire_all()
    rm = db.scalars(select(ModelVersion).where(ModelVersion.job_id == train_job.id)).one()
    assert rm.status == "active", rm.status_reason
    score_job = db.scalars(select(Job).where(Job.kind == "score_prompts", Job.project_id == project.id)).one()
    assert score_job.status == "succeeded", score_job.error
    assert score_job.parent_id == train_job.id and score_job.payload["version_id"] == rm.id
    assert score_job.result == {"version_id": rm.id, "completions": 12, "prompts": 4, "priorities_set": 4}

    scorer = RewardScorer(rm.checkpoint_path or "")  # the checkpoint the job scored with, loaded independently
    expected_priority: dict[int, float] = {}
    for prompt_id, rows in pending.items():
        prompt = db.get(Prompt, prompt_id)
        assert prompt is not None
        stored = [db.get(Completion, c.id) for c in rows]
        metas = [c.meta for c in stored if c is not None]
        assert all(m["rm_score_version"] == rm.id and isinstance(m["rm_score"], float) for m in metas)
        fresh = scorer.score([prompt.text] * len(rows), [c.text for c in rows])
        assert [m["rm_score"] for m in metas] == pytest.approx(fresh, abs=1e-4)
        expected_priority[prompt_id] = margin_uncertainty([m["rm_score"] for m in metas])
        assert prompt.priority == pytest.approx(expected_priority[prompt_id], rel=1e-6)
        slot = db.scalars(select(Slot).where(Slot.prompt_id == prompt_id)).one()
        assert slot.priority == pytest.approx(expected_priority[prompt_id], rel=1e-6)
    # Completions of prompts with no open slot (already ranked) are not scored.
    ranked = db.scalars(select(Completion).join(Prompt).where(Prompt.external_id.like("ranked-%"))).all()
    assert ranked and all("rm_score" not in (c.meta or {}) for c in ranked)

    first_id = next(iter(pending))
    ids = [c.id for c in pending[first_id]]
    hint = suggestion_for(db, project, ids)
    scores = {c.id: (db.get(Completion, c.id).meta or {})["rm_score"] for c in pending[first_id]}  # type: ignore[union-attr]
    assert hint is not None and hint["model_version_id"] == rm.id
    assert hint["order"] == sorted(ids, key=lambda c: -scores[c])
    db.commit()

    # Active selection: the claim hands out the most uncertain prompt first.
    task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers)
    assert task.status_code == 200, task.text
    assert task.json()["prompt"]["id"] == max(expected_priority, key=expected_priority.__getitem__)


def test_an_ensemble_reward_model_sets_priorities_by_its_members_disagreement(
        db: Session, clean_engine: Engine, settings: Settings, tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, prompts=0, rm_epochs=2, rm_ensemble_heads=3)
    project.settings = {**project.settings, "quality": {"active_selection": True}}
    add_ranked_prompts(db, project, 6)
    pending: dict[int, list[Completion]] = {}
    for i, (text, candidates) in enumerate(PENDING):
        prompt = Prompt(project_id=project.id, external_id=f"pending-{i}", text=text, content_hash=f"e{i:063x}")
        db.add(prompt)
        db.flush()
        pending[prompt.id] = [Completion(prompt_id=prompt.id, position=j, text=c) for j, c in enumerate(candidates)]
        db.add_all(pending[prompt.id])
    db.flush()
    ensure_slots(db, project, list(pending))
    train_job, _ = queue.enqueue(db, "train_reward_model", project.id)
    db.commit()

    config = WorkerConfig(worker_id="t", once=True, heartbeat_seconds=0.2, stale_seconds=30, run_scheduler=False)
    assert run_worker(settings, config, engine=clean_engine) == 2
    db.expire_all()
    rm = db.scalars(select(ModelVersion).where(ModelVersion.job_id == train_job.id)).one()
    assert rm.status == "active", rm.status_reason
    scorer = RewardScorer(rm.checkpoint_path or "")
    assert scorer.heads == 3
    for prompt_id, rows in pending.items():
        prompt = db.get(Prompt, prompt_id)
        assert prompt is not None
        metas = [c.meta for c in (db.get(Completion, r.id) for r in rows) if c is not None]
        fresh = scorer.score_members([prompt.text] * len(rows), [r.text for r in rows])
        assert [m["rm_members"] for m in metas] == [pytest.approx(f, abs=1e-4) for f in fresh]
        by_member = [[m["rm_members"][h] for m in metas] for h in range(3)]
        assert prompt.priority == pytest.approx(ensemble_disagreement(by_member), rel=1e-5, abs=1e-9)
