"""SFT as stage one of the loop (issue 12), on SQLite and Postgres, CPU, tiny models.

`train_sft` trains the base policy on the project's demonstrations through the real SFT trainer, registers
the SFT version (`role = "sft"`) with lineage rows of its demonstrations and makes it the active policy;
every later RL version takes its KL against it. The loop runs it before its first round when the project
has demonstrations; without any, the base model stays the SFT version.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli import cli
from app.demonstrations import service as demonstrations
from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.loop import service as loop
from app.models import Completion, Demonstration, Job, ModelVersion, Project
from app.registry import service as registry
from app.scheduler import service as scheduler
from app.settings import Settings
from tests.factories import api_token, make_user
from tests.worker.loop_helpers import PROMPTS, add_ranked_prompts, tiny_loop_project
from worker.loop import WorkerConfig, run_worker

SFT = {"sft_lr": 1e-3, "sft_epochs": 4.0, "policy_batch_prompts": 2}


def _work(settings: Settings, engine: Engine) -> int:
    return run_worker(settings, WorkerConfig(worker_id="test", once=True, heartbeat_seconds=0.2, stale_seconds=30),
                      engine=engine)


def _demonstrate(db: Session, project: Project, n: int) -> None:
    """Upload `n` prompts with a demonstration each, as a prompt-completion JSONL file."""
    lines = [json.dumps({"prompt": PROMPTS[i] + " (demo)", "completion": f"A short and careful answer {i}."})
             for i in range(n)]
    outcome = run_import(db, project, io.BytesIO("\n".join(lines).encode()), "sft.jsonl", ImportOptions())
    assert outcome.ok and outcome.counts["demonstrations_added"] == n, outcome.issues


def _jobs_after(db: Session, job_id: int) -> list[Job]:
    db.expire_all()
    return list(db.scalars(select(Job).where(Job.id > job_id).order_by(Job.id)))


def test_the_loop_trains_sft_first_and_every_rl_round_takes_it_as_reference(
        db: Session, client: TestClient, clean_engine: Engine, settings: Settings, tiny_models: dict[str, Path],
        dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = tiny_loop_project(db, tiny_models, algorithm="rloo", prompts=4, per_round=4, retrain_every=18,
                                policy_steps=2, rloo_k=2, **SFT)
    base = registry.ensure_base_version(db, project, "policy")
    assert base is not None and loop.sft_version(db, project) == base
    _demonstrate(db, project, 6)
    add_ranked_prompts(db, project, 6)  # 18 comparisons: the scheduler starts a round
    assert loop.sft_due(db, project)
    db.commit()

    created = scheduler.tick(db)
    db.commit()
    assert [j.kind for j in created] == ["train_sft"]  # stage one comes first
    assert _work(settings, clean_engine) == 5
    jobs = _jobs_after(db, created[0].id - 1)
    assert [(j.kind, j.status) for j in jobs] == [
        ("train_sft", "succeeded"), ("train_reward_model", "succeeded"), ("train_policy", "succeeded"),
        ("sample_completions", "succeeded"), ("score_prompts", "succeeded"),
    ], [(j.kind, j.status, j.error) for j in jobs]
    assert jobs[1].parent_id == jobs[0].id

    sft = db.get(ModelVersion, jobs[0].result["version_id"])  # type: ignore[index]
    assert sft is not None and sft.role == "sft" and sft.parent_id == base.id and sft.name == "policy-v1"
    assert sft.checkpoint_path and Path(sft.checkpoint_path, "meta.json").is_file()
    assert loop.sft_version(db, project) == sft and not loop.sft_due(db, project)
    used = set(db.scalars(select(Demonstration.id)))
    assert set(demonstrations.lineage(db, sft.id)) == used and len(used) == 6  # lineage: every demonstration
    assert sft.metrics["sft_loss_after"] < sft.metrics["sft_loss_before"]
    assert len(sft.metrics["history"]) == sft.training_config["steps"] == 12  # 4 epochs of 6 in batches of 2

    policy = db.get(ModelVersion, jobs[2].result["version_id"])  # type: ignore[index]
    assert policy is not None and policy.parent_id == sft.id  # RL starts from the active SFT version...
    assert policy.reference_version_id == sft.id  # ...and measures KL against it
    assert policy.metrics["reference_version"] == sft.name
    sampled = {c.model_version_id for c in db.scalars(select(Completion).where(Completion.source == "model"))}
    assert sft.id in sampled  # the SFT version writes its share of every task

    admin = api_token(db, make_user(db, "admin"))
    db.commit()
    listed = {v["name"]: v for v in client.get(f"/api/projects/{project.id}/models?kind=policy", headers=admin).json()}
    assert listed["policy-v1"]["demonstrations"] == 6 and listed["policy-v1"]["role"] == "sft"
    assert listed["policy-v2"]["reference_version"] == "policy-v1" and listed["policy-v0"]["demonstrations"] == 0
    detail = client.get(f"/api/projects/{project.id}/models/{sft.id}", headers=admin).json()
    assert sorted(detail["demonstration_ids"]) == sorted(used)
    page = client.get(f"/projects/{project.id}/models", headers=admin)
    assert page.status_code == 200 and "SFT · 6 demonstration(s)" in page.text
    page = client.get(f"/projects/{project.id}/models/{sft.id}", headers=admin)
    assert page.status_code == 200 and "6 demonstration(s) trained this checkpoint" in page.text
    page = client.get(f"/projects/{project.id}/jobs", headers=admin)
    assert page.status_code == 200 and "Train SFT (6 demonstration(s))" in page.text

    # A later round (by hand here) still measures KL against the same SFT version.
    add_ranked_prompts(db, project, 1, start=20)
    db.commit()
    assert scheduler.run_loop_now(db, project, "admin").kind == "train_reward_model"
    db.commit()
    assert _work(settings, clean_engine) >= 3
    policies = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id, ModelVersion.kind == "policy",
                                                     ModelVersion.role.is_(None), ModelVersion.id != base.id)).all()
    assert len(policies) == 2 and all(v.reference_version_id == sft.id for v in policies)


def test_run_loop_now_trains_sft_then_samples_round_zero_with_it(
        db: Session, clean_engine: Engine, settings: Settings, tiny_models: dict[str, Path], dialect: str) -> None:
    project = tiny_loop_project(db, tiny_models, algorithm="ppo", prompts=4, per_round=4, **SFT)
    _demonstrate(db, project, 2)
    db.commit()
    status = scheduler.status(db, project)
    assert status.sft_due and status.demonstrations == 2 and "train_sft" in status.waiting_for[0]
    job = scheduler.run_loop_now(db, project, "admin")
    db.commit()
    assert job.kind == "train_sft" and job.payload["chain"]
    assert _work(settings, clean_engine) == 2  # SFT, then round 0 sampled (no reward model yet to score it)
    jobs = _jobs_after(db, job.id - 1)
    assert [(j.kind, j.status) for j in jobs] == [("train_sft", "succeeded"), ("sample_completions", "succeeded")]
    sft = registry.active_version(db, project.id, "policy")
    assert sft is not None and sft.role == "sft" and jobs[0].result["activated"]  # type: ignore[index]
    assert loop.sft_version(db, project) == sft
    assert jobs[1].payload["candidate_version_id"] == sft.id
    new = db.scalars(select(Completion).where(Completion.source == "model")).all()
    assert new and {c.model_version_id for c in new} == {sft.id}


def test_without_demonstrations_the_base_model_is_the_sft_version(
        db: Session, client: TestClient, clean_engine: Engine, settings: Settings, tiny_models: dict[str, Path],
        cli_env: dict[str, str], dialect: str) -> None:
    project = tiny_loop_project(db, tiny_models, algorithm="rloo", prompts=4, per_round=4, rloo_k=2, policy_steps=2)
    db.commit()
    assert not loop.sft_due(db, project)
    assert scheduler.run_loop_now(db, project, "admin").kind == "sample_completions"  # no stage one to run
    db.commit()
    assert _work(settings, clean_engine) == 1
    base = registry.active_version(db, project.id, "policy")
    assert base is not None and base.name == "policy-v0" and loop.sft_version(db, project) == base

    admin = api_token(db, make_user(db, "admin"))
    db.commit()
    response = client.post(f"/api/projects/{project.id}/loop/sft", headers=admin)  # by hand: nothing to train on
    assert response.status_code == 200 and response.json()["kind"] == "train_sft", response.text
    assert _work(settings, clean_engine) == 1
    job = db.get(Job, response.json()["id"])
    db.refresh(job)  # type: ignore[arg-type]
    assert job is not None and job.status == "succeeded" and job.result["trained"] is False  # type: ignore[index]
    db.expire_all()
    assert loop.sft_version(db, project) == base
    assert [v.name for v in registry.list_versions(db, project.id, "policy")] == ["policy-v0"]

    add_ranked_prompts(db, project, 6)
    db.commit()
    assert scheduler.run_loop_now(db, project, "admin").kind == "train_reward_model"
    db.commit()
    assert _work(settings, clean_engine) == 4
    policy = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                                   ModelVersion.kind == "policy", ModelVersion.id != base.id)).one()
    assert policy.reference_version_id == base.id and policy.role is None
    db.commit()

    runner = CliRunner()
    listed = runner.invoke(cli, ["models", "list", str(project.id), "--kind", "policy", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["policy-v1"]["reference_version"] == "policy-v0" and rows["policy-v1"]["demonstrations"] == 0
    queued = runner.invoke(cli, ["loop", "sft", str(project.id), "--json"])
    assert queued.exit_code == 0 and json.loads(queued.stdout)["kind"] == "train_sft", queued.output


def test_imported_demonstrations_start_stage_one_at_once_and_only_once(
        db: Session, tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, prompts=4, retrain_every=18, **SFT)
    _demonstrate(db, project, 3)
    db.commit()
    created = scheduler.tick(db)
    db.commit()
    # No ranking yet and none needed: the SFT version is trained now, without starting a round after it.
    assert [(j.kind, j.project_id, j.payload.get("chain")) for j in created] == [("train_sft", project.id, False)]
    assert scheduler.tick(db) == []  # the loop is busy with it
    created[0].status = "failed"
    db.commit()
    assert scheduler.tick(db) == []  # a failed run is not restarted by every tick

    # Once people have ranked, stage one waits for the round it precedes (18 comparisons here).
    ranked = tiny_loop_project(db, tiny_models, prompts=0, retrain_every=18, **SFT)
    _demonstrate(db, ranked, 2)
    add_ranked_prompts(db, ranked, 2)
    db.commit()
    assert [j for j in scheduler.tick(db) if j.project_id == ranked.id] == []
