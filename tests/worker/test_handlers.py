"""Handlers in process on both dialects: DPO policy training with lineage, cancelling a running training job,
a sampling job for a project with no policy failing with a clear, non-retried error, and reward training
with only AI rankings (left out by default) failing with a message that says so and how to opt in."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db import make_session_factory, unit_of_work
from app.jobs import queue
from app.models import Comparison, Completion, Job, ModelVersion, Ranking
from app.registry import datasets
from app.registry import service as registry
from app.settings import Settings
from tests.factories import make_project, make_prompt
from tests.worker.loop_helpers import add_ranked_prompts, tiny_loop_project
from worker.loop import WorkerConfig, run_worker


def _config(**extra: object) -> WorkerConfig:
    return WorkerConfig(worker_id="t", once=True, heartbeat_seconds=0.1, stale_seconds=30, run_scheduler=False,
                        **extra)  # type: ignore[arg-type]


def _train_policy(db: Session, engine: Engine, settings: Settings, project_id: int) -> Job:
    """Run one train_policy job through a real worker; it must succeed."""
    job, _ = queue.enqueue(db, "train_policy", project_id)
    db.commit()
    assert run_worker(settings, _config(), engine=engine) == 1
    db.expire_all()
    done = db.get(Job, job.id)
    assert done is not None and done.status == "succeeded", done and done.error
    return done


def test_dpo_policy_records_lineage(db: Session, clean_engine: Engine, settings: Settings,
                                    tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, algorithm="dpo", policy_steps=2)
    comparison_ids = add_ranked_prompts(db, project, 4)
    done = _train_policy(db, clean_engine, settings, project.id)
    assert done.payload["watermark"] == comparison_ids[-1] and done.result["algorithm"] == "dpo"  # type: ignore[index]
    version = db.scalars(select(ModelVersion).where(ModelVersion.job_id == done.id)).one()
    assert version.kind == "policy" and version.name == "policy-v1" and version.status in ("active", "rejected")
    assert registry.lineage(db, version.id) == comparison_ids
    assert version.metrics["history"] and "kl" in version.metrics


def test_a_fresher_reward_model_judges_the_policy(db: Session, clean_engine: Engine, settings: Settings,
                                                  tiny_models: dict[str, Path]) -> None:
    """A reward model trained on newer rankings than the active one (here: rejected) scores the same held-out
    samples before and after, and its verdict is part of the promotion decision."""
    project = tiny_loop_project(db, tiny_models, algorithm="rloo", policy_steps=2, rloo_k=2)
    assert registry.ensure_base_version(db, project, "reward") is not None  # reward-v0, active
    db.add(ModelVersion(project_id=project.id, kind="reward", name="reward-v7", base_model=str(tiny_models["reward"]),
                        status="rejected", checkpoint_path=str(tiny_models["reward"]), data_watermark=999))
    done = _train_policy(db, clean_engine, settings, project.id)
    version = db.scalars(select(ModelVersion).where(ModelVersion.job_id == done.id)).one()
    judged = version.metrics["judges"]["reward-v7"]
    # The judge is the same network as the active reward model, so on the same samples it must agree.
    assert judged["before"] == pytest.approx(version.metrics["reward_before"], abs=1e-4)
    assert judged["after"] == pytest.approx(version.metrics["reward_after"], abs=1e-4)
    if version.status == "active":
        assert "also higher under reward-v7" in version.status_reason


def test_cancel_running_training(db: Session, clean_engine: Engine, settings: Settings,
                                 tiny_models: dict[str, Path]) -> None:
    project = tiny_loop_project(db, tiny_models, rm_batch_prompts=1, rm_epochs=40)
    add_ranked_prompts(db, project, 8)
    job, _ = queue.enqueue(db, "train_reward_model", project.id)
    db.commit()
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(run_worker(settings, _config(), engine=clean_engine)))
    thread.start()
    factory = make_session_factory(clean_engine)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with unit_of_work(factory) as s:
            if s.get(Job, job.id).progress > 0.05:  # type: ignore[union-attr]
                queue.cancel(s, job.id, by="admin")
                break
        time.sleep(0.05)  # polling with a deadline
    thread.join(timeout=120)
    assert outcome == [1]
    db.expire_all()
    done = db.get(Job, job.id)
    assert done is not None and done.status == "cancelled" and done.progress < 1.0
    version = db.scalars(select(ModelVersion).where(ModelVersion.job_id == job.id)).one()
    assert version.status == "rejected" and "cancelled" in version.status_reason
    assert registry.active_version(db, project.id, "reward").name == "reward-v0"  # type: ignore[union-attr]


def _fails_at_once(db: Session, engine: Engine, settings: Settings, kind: str, project_id: int) -> str:
    """Run one `kind` job (3 attempts allowed) through a real worker; it must fail on the first; its error."""
    job, _ = queue.enqueue(db, kind, project_id, max_attempts=3)
    db.commit()
    assert run_worker(settings, _config(), engine=engine) == 1
    db.expire_all()
    done = db.get(Job, job.id)
    assert done is not None and done.status == "failed" and done.attempts == 1
    return done.error or ""


def test_missing_policy_fails_without_retry(db: Session, clean_engine: Engine, settings: Settings) -> None:
    project = make_project(db)
    make_prompt(db, project, 0)
    error = _fails_at_once(db, clean_engine, settings, "sample_completions", project.id)
    assert "no policy model" in error and f"projects configure {project.id}" in error


def test_only_ai_rankings_fail_reward_training_with_a_clear_error(db: Session, clean_engine: Engine,
                                                                  settings: Settings) -> None:
    project = make_project(db, settings={"training": {"reward_model": "/models/reward"}})
    for ranker in ("reward-model", "chat"):
        prompt = make_prompt(db, project, 2)
        best, worst = db.scalars(select(Completion.id).where(Completion.prompt_id == prompt.id)
                                 .order_by(Completion.id)).all()
        ranking = Ranking(project_id=project.id, prompt_id=prompt.id, source="ai", ranks={str(best): 1, str(worst): 2},
                          shown_order=[best, worst], client_info={"via": "ai-annotate", "ranker": ranker})
        db.add(ranking)
        db.flush()
        db.add(Comparison(project_id=project.id, prompt_id=prompt.id, ranking_id=ranking.id, winner_id=best,
                          loser_id=worst))
    error = _fails_at_once(db, clean_engine, settings, "train_reward_model", project.id)
    assert "no rankings to train on" in error and "2 AI rankings were left out" in error, error
    assert f"prefloop projects configure {project.id} --ai-rankings llm-judge" in error

    # With the opt-in, the LLM-judge ranking trains; the reward-model-ranked one is still left out.
    watermark = max(db.scalars(select(Comparison.id).where(Comparison.project_id == project.id)))
    opted = datasets.load_snapshot(db, project.id, watermark, "llm-judge")
    assert len(opted.groups) == 1 and opted.ai_rankings_left_out == 1


def test_reward_model_schedule_is_left_to_the_plan_unless_set() -> None:
    from app.projects.schemas import TrainingSettings
    from worker.handlers.train_reward_model import _checkpoint_every

    defaults = TrainingSettings()
    assert (defaults.rm_epochs, defaults.rm_lr, defaults.rm_batch_prompts) == (None, None, None)
    assert _checkpoint_every(100, None, None) == 25  # the plan picks the schedule: a fixed resume cadence
    assert _checkpoint_every(100, 10, 2) == 5  # 20 steps set by hand: four resume states
    assert _checkpoint_every(3, 8, 1) == 0  # a one-step run needs none
