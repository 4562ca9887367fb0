"""The closed loop end to end on CPU with tiny models, on SQLite and Postgres: sample K candidates,
annotators rank through the JSON API, the threshold triggers RM → policy → next round → scoring, lineage
is exact. (Several rounds on a fixed pool: test_loop_rounds.)"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.jobs import queue
from app.models import Comparison, Completion, Job, ModelVersion, Prompt
from app.registry import service as registry
from app.scheduler import service as scheduler
from app.settings import Settings
from tests.factories import api_token, make_user
from tests.worker.loop_helpers import annotate_all, tiny_loop_project, trained_comparisons
from worker.loop import WorkerConfig, run_worker


def _work(settings: Settings, engine: Engine) -> int:
    return run_worker(settings, WorkerConfig(worker_id="test", once=True, heartbeat_seconds=0.2, stale_seconds=30),
                      engine=engine)


def test_closed_loop(db: Session, client: TestClient, clean_engine: Engine, settings: Settings,
                     tiny_models: dict[str, Path], dialect: str) -> None:
    project = tiny_loop_project(db, tiny_models)
    headers = api_token(db, make_user(db, "annotator"))
    first = scheduler.run_loop_now(db, project, "admin")
    db.commit()
    assert first.kind == "sample_completions"

    assert _work(settings, clean_engine) == 1
    db.expire_all()
    v0 = registry.active_version(db, project.id, "policy")
    assert v0 is not None and v0.name == "policy-v0"
    round1 = db.scalars(select(Completion).where(Completion.model_version_id == v0.id)).all()
    by_prompt: dict[int, int] = {}
    for c in round1:
        by_prompt[c.prompt_id] = by_prompt.get(c.prompt_id, 0) + 1
        assert c.source == "model" and c.model_name == "policy-v0"
    assert len(by_prompt) == 6 and set(by_prompt.values()) == {3}
    db.commit()  # end the read transaction: on SQLite it holds the write lock the API needs

    assert annotate_all(client, project.id, headers) == 6
    comparison_ids = sorted(db.scalars(select(Comparison.id).where(Comparison.project_id == project.id)))
    assert len(comparison_ids) == 18  # 6 rankings × C(3, 2)
    db.commit()

    # The scheduler tick inside the worker sees 18 new comparisons and runs RM → policy → sampling → scoring.
    assert _work(settings, clean_engine) == 4
    db.expire_all()
    jobs = db.scalars(select(Job).where(Job.project_id == project.id).order_by(Job.id)).all()
    assert [(j.kind, j.status) for j in jobs] == [
        ("sample_completions", "succeeded"), ("train_reward_model", "succeeded"),
        ("train_policy", "succeeded"), ("sample_completions", "succeeded"), ("score_prompts", "succeeded"),
    ], [(j.kind, j.status, j.error) for j in jobs]
    assert jobs[2].parent_id == jobs[1].id and jobs[3].parent_id == jobs[2].id and jobs[4].parent_id == jobs[3].id
    assert jobs[1].payload["watermark"] == comparison_ids[-1]

    rm = db.scalars(select(ModelVersion).where(ModelVersion.kind == "reward", ModelVersion.name == "reward-v1")).one()
    assert rm.status == "active", rm.status_reason
    assert rm.data_watermark == comparison_ids[-1] and rm.job_id == jobs[1].id
    # The fixed test set holds a quarter of the 6 ranked prompts out of training: rm trains on the others.
    trained = trained_comparisons(db, project.id, comparison_ids)
    assert registry.lineage(db, rm.id) == trained and len(trained) == 12
    assert [v.id for v in registry.trained_by(db, trained[0])] == [rm.id]
    assert "heldout" in rm.metrics and rm.metrics["comparisons"] == 12
    assert rm.metrics["test_set_version"] == 1 and rm.metrics["test_pairs"] == 6
    assert rm.metrics["test_sets"]["1"]["accuracy"] == rm.metrics["test_accuracy"] is not None
    assert Path(rm.checkpoint_path or "").is_relative_to(settings.checkpoint_dir / str(project.id) / "reward")

    policy = db.scalars(select(ModelVersion).where(ModelVersion.kind == "policy", ModelVersion.name == "policy-v1")
                        ).one()
    assert policy.parent_id == v0.id and policy.training_config["reward_version_id"] == rm.id
    assert policy.reference_version_id == v0.id and policy.reward_version_id == rm.id
    assert policy.metrics["reward_before"] is not None and len(policy.metrics["history"]) == 3
    active_policy = registry.active_version(db, project.id, "policy")
    assert active_policy is not None
    round2 = db.scalars(select(Completion).where(Completion.id.not_in([c.id for c in round1]))).all()
    # K = 3 side by side: one from the new candidate (policy-v1), one from the active policy, one from SFT.
    assert len(round2) == 18 and {c.model_version_id for c in round2} == {v0.id, policy.id}
    assert all(sum(c.model_version_id == policy.id for c in round2 if c.prompt_id == pid) ==
               (2 if policy.status == "active" else 1) for pid in {c.prompt_id for c in round2})
    assert all((c.meta or {}).get("rm_score_version") == rm.id for c in round2)  # scored after sampling
    assert not {c.prompt_id for c in round2} & set(by_prompt)  # never-ranked prompts come first
    if policy.status == "active":
        assert active_policy.id == policy.id
    else:
        # The tiny run's reward gain depends on the labeling order; a rejection must say why, keep v0
        # active, and the admin override must make the next sampling use policy-v1.
        assert policy.status == "rejected" and "mean reward" in policy.status_reason
        assert active_policy.id == v0.id
        registry.promote(db, policy, "promoted by hand", by="admin")
        db.add(Prompt(project_id=project.id, external_id="extra", text="One more prompt?", content_hash="f" * 64))
        queue.enqueue(db, "sample_completions", project.id, {"limit": 1})
        db.commit()
        assert _work(settings, clean_engine) == 2  # sampling, then scoring
        extra = db.scalars(select(Completion).join(Prompt).where(Prompt.external_id == "extra")).all()
        assert len(extra) == 3 and [c.model_version_id for c in extra].count(policy.id) == 2  # and one SFT
        round2 = round2 + list(extra)
    assert db.scalar(select(func.count()).select_from(Completion)) == len(round1) + len(round2)
