"""Three unattended rounds on a FIXED prompt pool (issue 12), on SQLite and Postgres, CPU, tiny models.

A scripted annotator ranks every task through the JSON API; the worker alone runs each round (reward
model → RLOO policy → sampling → scoring). Every round must sample new candidates (from round 2 on for
prompts already ranked), every RL version must take its KL against the same frozen SFT version and carry
lineage rows, every sampling must be scored by the active reward model, and tasks after round 1 must put
several policy versions side by side. Promotion by people is on (`training.confirm_rankings` = one
round's rankings): each policy the gates promote is provisional until the scripted annotator's rankings of
the next round's tasks, which show it beside its incumbent, confirm it or roll it back at the next tick.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.loop import service as loop
from app.loop.kl_schedule import next_coef
from app.models import Assignment, Completion, Job, ModelVersion
from app.registry import service as registry
from app.scheduler import service as scheduler
from app.settings import Settings
from tests.factories import api_token, make_user
from tests.worker.loop_helpers import annotate_all, tiny_loop_project
from worker.loop import WorkerConfig, run_worker

POOL = 8
PER_ROUND = 4
K = 4
KL_BETA = 0.02  # the default training.kl_beta


def _work(settings: Settings, engine: Engine) -> int:
    return run_worker(settings, WorkerConfig(worker_id="test", once=True, heartbeat_seconds=0.2, stale_seconds=30),
                      engine=engine)


def test_three_rounds_on_a_fixed_pool(db: Session, client: TestClient, clean_engine: Engine, settings: Settings,
                                      tiny_models: dict[str, Path], dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = tiny_loop_project(db, tiny_models, algorithm="rloo", prompts=POOL, per_round=PER_ROUND,
                                retrain_every=1, k=K, policy_steps=2, policy_batch_prompts=2,
                                rloo_k=2, confirm_rankings=PER_ROUND)
    headers = api_token(db, make_user(db, "annotator"))
    scheduler.run_loop_now(db, project, "admin")
    db.commit()
    assert _work(settings, clean_engine) == 1  # round 0: policy-v0 (the SFT version) samples 4 prompts
    sft = registry.active_version(db, project.id, "policy")
    assert sft is not None and loop.sft_version(db, project) == sft
    db.commit()
    assert annotate_all(client, project.id, headers) == PER_ROUND

    seen_prompts: set[int] = set(db.scalars(select(Completion.prompt_id).distinct()))
    promoted: list[int] = []
    db.commit()
    for round_number in (1, 2, 3):
        before = set(db.scalars(select(Completion.id)))
        last_job = db.scalar(select(Job.id).order_by(Job.id.desc()))
        db.commit()
        assert _work(settings, clean_engine) == 4, round_number  # RM → policy → sampling → scoring
        db.expire_all()
        jobs = db.scalars(select(Job).where(Job.id > (last_job or 0)).order_by(Job.id)).all()
        assert [(j.kind, j.status) for j in jobs] == [
            ("train_reward_model", "succeeded"), ("train_policy", "succeeded"),
            ("sample_completions", "succeeded"), ("score_prompts", "succeeded"),
        ], [(j.kind, j.status, j.error) for j in jobs]
        sampled = jobs[2].result or {}

        new = db.scalars(select(Completion).where(Completion.id.not_in(before))).all()
        prompts = {c.prompt_id for c in new}
        assert len(prompts) == PER_ROUND and len(new) == PER_ROUND * K, round_number
        assert sampled["prompts"] == PER_ROUND
        if round_number >= 2:  # the pool of 8 was used up by rounds 0 and 1: ranked prompts come back
            assert sampled["resampled_prompts"] > 0 and prompts <= seen_prompts
            assert all(c.round >= 1 for c in new)
        if round_number == 2:  # round 1's prompts were scored: half by uncertainty, then round 0's (oldest)
            assert sampled["reasons"] == {"uncertain": 2, "least_recent": 2}, sampled["reasons"]
        seen_prompts |= prompts

        # Scored after sampling, by the reward model active now.
        rm = registry.active_version(db, project.id, "reward")
        assert rm is not None and rm.data_watermark is not None
        assert all((c.meta or {}).get("rm_score_version") == rm.id for c in new), round_number

        # Versions side by side: the new candidate writes K-2, the active policy 1, the SFT version 1.
        per_prompt: dict[int, set[int | None]] = {}
        for c in new:
            per_prompt.setdefault(c.prompt_id, set()).add(c.model_version_id)
        assert all(len(v) >= 2 for v in per_prompt.values()), per_prompt
        assert all(sft.id in v for v in per_prompt.values())
        candidate = jobs[1].result or {}
        assert all(candidate["version_id"] in v for v in per_prompt.values())
        db.commit()

        assert annotate_all(client, project.id, headers) == PER_ROUND, round_number
        if candidate["status"] == "active":  # provisional: these PER_ROUND rankings show it beside its incumbent
            version = db.get(ModelVersion, candidate["version_id"])
            assert version is not None and version.promotion_state == "provisional", round_number
            assert version.incumbent_version_id is not None
            assert all(version.incumbent_version_id in v for v in per_prompt.values()), round_number
            promoted.append(version.id)
        task = db.scalars(select(Assignment).where(Assignment.prompt_id.in_(prompts))
                          .order_by(Assignment.id.desc())).first()
        assert task is not None and len(task.shown_completion_ids) == K
        shown = db.scalars(select(Completion.model_version_id).where(Completion.id.in_(task.shown_completion_ids)))
        assert len(set(shown)) >= 2
        db.commit()

    policies = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                                     ModelVersion.kind == "policy", ModelVersion.id != sft.id)).all()
    assert len(policies) == 3
    for version in policies:
        assert version.reference_version_id == sft.id, version.name
        assert version.metrics["reference_version"] == sft.name and version.metrics["kl"] is not None
        assert version.reward_version_id is not None
        assert version.training_config["reward_version_id"] == version.reward_version_id
        assert len(loop.rollout_prompts(db, version.id)) > 0, version.name  # lineage: its rollout prompts
        assert version.status in ("active", "rejected", "candidate")
    # The KL schedule: each round's coefficient is learnt from the round before (app.loop.kl_schedule).
    ordered = sorted(policies, key=lambda v: v.id)
    assert ordered[0].training_config["kl_schedule"]["previous_version"] is None
    for before, version in zip(ordered, ordered[1:], strict=False):
        step = version.training_config["kl_schedule"]
        assert step["previous_version"] == before.name and step["previous_kl"] == before.metrics["kl"]
        assert version.training_config["kl_coef"] == step["coef"] == pytest.approx(
            next_coef(KL_BETA, step["target"], before.training_config["kl_coef"], before.metrics["kl"]))
    # People decided every promoted version but the last (its rankings are in, but no tick ran since).
    assert promoted, "no round's policy passed the gates: nothing for people to confirm"
    scheduler.tick(db)
    db.commit()
    db.expire_all()
    for version_id in promoted:
        version = db.get(ModelVersion, version_id)
        assert version is not None and version.promotion_state in ("confirmed", "rolled_back"), version_id
        assert version.promotion_reason.startswith("people prefer"), version.promotion_reason
        assert (version.status == "rejected") == (version.promotion_state == "rolled_back")
    rewards = db.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                                    ModelVersion.kind == "reward",
                                                    ModelVersion.data_watermark.is_not(None))).all()
    assert len(rewards) == 3 and all(registry.lineage(db, v.id) for v in rewards)  # lineage: its comparisons
    admin = api_token(db, make_user(db, "admin"))
    db.commit()
    listed = {v["id"]: v for v in client.get(f"/api/projects/{project.id}/models?kind=policy", headers=admin).json()}
    assert all(listed[v.id]["reference_version_id"] == sft.id and listed[v.id]["rollout_prompts"] > 0
               for v in policies)
    # Older completions stay, with their rankings: 4 rounds of 4 prompts × K.
    assert len(db.scalars(select(Completion.id)).all()) == 4 * PER_ROUND * K
