"""The loop measurably improves the policy (tracker issue 6), on SQLite and Postgres, CPU, tiny models.

A planted preference (more words is better, `loop_helpers.words`) is applied by a scripted annotator
through the JSON API to what policy-v0 sampled (K = 8 per prompt, ties share a rank). The worker then runs
the real chain, reward model → RLOO policy → next sampling, with nothing but project settings. The new
policy must beat policy-v0 on >= 60 % of held-out prompts (not in the project), judged on generated text by
the same preference function, at a sequence KL to the starting policy below the project's KL budget.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.models import Job, ModelVersion, Prompt
from app.registry import service as registry
from app.scheduler import service as scheduler
from app.settings import Settings
from tests.factories import api_token, make_project, make_user
from tests.worker.loop_helpers import PROMPTS, annotate_all, rank_by_words, win_rate, words
from worker.loop import WorkerConfig, run_worker
from worker.training.tiny import default_texts

TRAIN_PROMPTS = 96
HELDOUT_PROMPTS = 32
KL_BUDGET = 10.0  # nats per completion (sequence KL to the starting policy); the project's training.kl_budget
SETTINGS = {
    "sampling": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "seed": 0, "k": 8},
    # Values found on CPU with tiny random-init models (docs/worker.md, "Does the loop improve the policy?"):
    # K = 8 gives 28 comparisons per ranking, which a tiny RM needs; 8 epochs at lr 1e-3; RLOO, 40 steps.
    "training": {"algorithm": "rloo", "rm_epochs": 8, "rm_lr": 1e-3, "rm_batch_prompts": 4,
                 "rm_heldout_fraction": 0.25, "policy_lr": 1e-3, "policy_steps": 40, "policy_batch_prompts": 8,
                 "rloo_k": 4, "kl_beta": 0.1, "kl_budget": KL_BUDGET},
    # One round only: with `resample` off the chained sampling after the policy finds nothing to sample.
    "schedule": {"enabled": True, "retrain_every": 1, "prompts_per_round": TRAIN_PROMPTS, "resample": False},
}


def _prompts() -> list[str]:
    """Distinct prompts: an instruction plus one built-in sentence (the tiny tokenizer was trained on both)."""
    texts = default_texts()
    return [f"{PROMPTS[i % len(PROMPTS)]} ({texts[(i * 7) % len(texts)]})"
            for i in range(TRAIN_PROMPTS + HELDOUT_PROMPTS)]


def test_loop_improves_policy_on_planted_preference(db: Session, client: TestClient, clean_engine: Engine,
                                                    settings: Settings, tiny_models: dict[str, Path],
                                                    dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    config = {**SETTINGS, "training": {**SETTINGS["training"], "policy_model": str(tiny_models["policy"]),
                                       "reward_model": str(tiny_models["reward"])}}
    project = make_project(db, k_min=2, k_max=8, annotations_per_prompt=1, settings=config)
    prompts = _prompts()
    train, heldout = prompts[:TRAIN_PROMPTS], prompts[TRAIN_PROMPTS:]
    for i, text in enumerate(train):
        db.add(Prompt(project_id=project.id, external_id=f"improve-{i}", text=text, content_hash=f"i{i:063x}"))
    headers = api_token(db, make_user(db, "annotator"))
    scheduler.run_loop_now(db, project, "admin")
    db.commit()
    work = WorkerConfig(worker_id="test", once=True, heartbeat_seconds=0.5, stale_seconds=60)

    assert run_worker(settings, work, engine=clean_engine) == 1  # policy-v0 samples K = 8 for every prompt
    assert annotate_all(client, project.id, headers, rank_by_words) == TRAIN_PROMPTS
    assert run_worker(settings, work, engine=clean_engine) == 3  # RM → policy → (nothing left to sample)
    db.expire_all()
    jobs = db.scalars(select(Job).where(Job.project_id == project.id).order_by(Job.id)).all()
    assert [(j.kind, j.status) for j in jobs][1:3] == [("train_reward_model", "succeeded"),
                                                      ("train_policy", "succeeded")], [j.error for j in jobs]
    rm = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                               ModelVersion.name == "reward-v1")).one()
    policy = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                                   ModelVersion.name == "policy-v1")).one()
    v0 = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                               ModelVersion.name == "policy-v0")).one()
    db.commit()
    assert rm.status == "active" and rm.metrics["heldout_accuracy"] > 0.55, rm.metrics.get("heldout_accuracy")
    kl = policy.metrics["kl"]
    assert policy.status == "active", policy.status_reason  # reward improved at KL within the budget
    assert policy.metrics["reward_after"] > policy.metrics["reward_before"]
    assert 0.0 < kl < KL_BUDGET
    assert registry.active_version(db, project.id, "policy").id == policy.id  # type: ignore[union-attr]
    db.commit()

    rate = win_rate(policy.checkpoint_path or "", v0.checkpoint_path or "", heldout, words, samples=4,
                    max_new_tokens=12, seed=1)
    assert rate >= 0.6, f"policy-v1 wins on {rate:.0%} of held-out prompts (KL {kl:.2f})"
