"""Reward models on tiny local models are measured on the project's fixed test set, on both dialects: the
job records the test-set version it measured on and the accuracy and calibration there, trains on
everything else, and the next job (after more prompts were ranked) appends a test-set version and scores
the active model again on it, like for like; `prefloop models list --json` and the API show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import cli
from app.jobs import queue
from app.loop import service as loop
from app.models import Job, ModelVersion
from app.registry import service as registry
from app.settings import Settings
from tests.factories import api_token, make_user
from tests.worker.loop_helpers import add_ranked_prompts, tiny_loop_project, trained_comparisons
from worker.loop import WorkerConfig, run_worker


def _train(db: Session, engine: Engine, settings: Settings, project_id: int,
           kind: str = "train_reward_model") -> tuple[Job, ModelVersion]:
    """Run one training job of `kind` through the real worker; (the finished job, the version it trained)."""
    job, _ = queue.enqueue(db, kind, project_id)
    db.commit()
    config = WorkerConfig(worker_id="t", once=True, heartbeat_seconds=0.1, stale_seconds=30, run_scheduler=False)
    assert run_worker(settings, config, engine=engine) == 1
    db.expire_all()
    done = db.get(Job, job.id)
    assert done is not None and done.status == "succeeded", done and done.error
    return done, db.scalars(select(ModelVersion).where(ModelVersion.job_id == done.id)).one()


def test_reward_models_are_measured_on_one_fixed_test_set(db: Session, client: TestClient, clean_engine: Engine,
                                                          settings: Settings, tiny_models: dict[str, Path],
                                                          cli_env: dict[str, str], dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = tiny_loop_project(db, tiny_models, prompts=0)  # rm_heldout_fraction 0.25
    first_ids = add_ranked_prompts(db, project, 8)
    job1, v1 = _train(db, clean_engine, settings, project.id)
    test1 = registry.test_set(db, project.id)
    held = len(test1.prompt_ids)
    assert job1.payload["test_set_version"] == 1 and test1.version == 1 and 2 <= held < 8  # a quarter of 8 or more
    m1 = v1.metrics
    assert m1["test_set_version"] == 1 and m1["test_prompts"] == held and m1["test_pairs"] == 3 * held
    assert 0.0 <= m1["test_accuracy"] <= 1.0 and m1["test_accuracy"] == m1["heldout_accuracy"]
    assert m1["test_ece"] is not None and m1["test_sets"]["1"]["n_pairs"] == 3 * held
    assert job1.result is not None and job1.result["test_set_version"] == 1
    assert registry.lineage(db, v1.id) == trained_comparisons(db, project.id, first_ids)
    assert len(registry.lineage(db, v1.id)) == m1["comparisons"] == 3 * (8 - held)  # only the other prompts
    assert v1.status == "active", v1.status_reason  # the base model is not measured: the new one wins

    # More prompts are ranked: the test set grows by appending (version 2), the old members stay, and
    # the active model (reward-v1) is scored again on version 2, beside the new model.
    second_ids = add_ranked_prompts(db, project, 16, start=20)
    job2, v2 = _train(db, clean_engine, settings, project.id)
    test2 = registry.test_set(db, project.id)
    assert job2.payload["test_set_version"] == 2 and test2.version == 2 and test1.prompt_ids < test2.prompt_ids
    assert registry.test_set(db, project.id, 1) == test1
    m2 = v2.metrics
    assert m2["test_set_version"] == 2 and m2["test_pairs"] == 3 * len(test2.prompt_ids)
    db.refresh(v1)
    assert set(v1.metrics["test_sets"]) == {"1", "2"}
    assert v1.metrics["test_sets"]["2"]["accuracy"] == m2["active_test_accuracy"] is not None
    assert v1.metrics["test_sets"]["2"]["n_pairs"] == m2["test_pairs"]
    assert registry.lineage(db, v2.id) == trained_comparisons(db, project.id, first_ids + second_ids)
    assert loop.count_eligible(db, project) == 24 - len(test2.prompt_ids)  # the loop never samples them

    db.commit()
    listed = CliRunner().invoke(cli, ["models", "list", str(project.id), "--kind", "reward", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["reward-v1"]["test_set_version"] == 2 and rows["reward-v2"]["test_set_version"] == 2
    assert rows["reward-v2"]["test_accuracy"] == m2["test_accuracy"]
    assert rows["reward-v1"]["test_accuracy"] == m2["active_test_accuracy"]
    text = CliRunner().invoke(cli, ["models", "list", str(project.id), "--kind", "reward"])
    assert "test_set=v2" in text.output
    admin = api_token(db, make_user(db, "admin"))
    db.commit()
    api = client.get(f"/api/projects/{project.id}/models?kind=reward", headers=admin)
    assert api.status_code == 200, api.text
    shown = {v["name"]: v for v in api.json()}
    assert shown["reward-v2"]["test_set_version"] == 2 and shown["reward-v2"]["test_ece"] == m2["test_ece"]


@pytest.mark.parametrize("algorithm", ["rloo", "dpo"])
def test_policy_training_leaves_the_test_set_out(db: Session, clean_engine: Engine, settings: Settings,
                                                 tiny_models: dict[str, Path], algorithm: str) -> None:
    """Rollouts (PPO/RLOO) never sample a test-set prompt and DPO never trains on a test-set ranking, so the
    reward models and the policies are measured on prompts no model trained on."""
    project = tiny_loop_project(db, tiny_models, prompts=0, algorithm=algorithm, rloo_k=2)
    ranked = add_ranked_prompts(db, project, 8)  # comparison ids
    _train(db, clean_engine, settings, project.id)
    held = registry.test_set_prompt_ids(db, project.id)
    assert 2 <= len(held) < 8
    _, version = _train(db, clean_engine, settings, project.id, "train_policy")
    if algorithm == "dpo":
        trained = registry.lineage(db, version.id)
        assert trained and trained == trained_comparisons(db, project.id, ranked)
        assert version.metrics["train_prompts"] + version.metrics["heldout_prompts"] == 8 - len(held)
    else:
        rollouts = set(loop.rollout_prompts(db, version.id))
        assert rollouts and not rollouts & held
        assert version.metrics["train_prompts"] + version.metrics["heldout_prompts"] == 8 - len(held)
