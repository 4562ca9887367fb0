"""What follows each job kind's success in the loop: (SFT →) reward model → policy → sampling → scoring.

A chained round (payload `chain`) trains the reward model, then the policy against it, then samples the
next round with the new policy as the candidate beside the active and SFT policies, then scores the new
candidates with the active reward model, so RM suggestions, active selection and the reward-model
ranker work on every loop task. A chained `train_sft` (stage one, before the first round) goes on with
the round it preceded. Every sampling job is followed by scoring, chained or not; a promoted
reward model also rescores prompts still being labeled (app.quality.scoring). Each job records the job
that triggered it as its parent. Never commits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.jobs import queue
from app.models import Job
from app.models.enums import JobKind, VersionKind
from app.projects import service as projects
from app.quality.scoring import enqueue_after_promotion
from app.registry import queries as registry_queries
from app.registry import service as registry


def after_success(db: Session, job: Job) -> Job | None:
    """Enqueue the loop step that follows `job`; returns it (None when nothing follows)."""
    enqueue_after_promotion(db, job)
    if job.project_id is None:
        return None
    result = job.result or {}
    if job.kind == JobKind.SAMPLE_COMPLETIONS:
        return _score_new_candidates(db, job, [int(p) for p in result.get("prompt_ids") or []])
    if not job.payload.get("chain"):
        return None
    if job.kind == JobKind.TRAIN_SFT:
        return _after_sft(db, job, result.get("version_id"))
    if job.kind == JobKind.TRAIN_REWARD_MODEL:
        nxt, _ = queue.enqueue(db, JobKind.TRAIN_POLICY, job.project_id, {"chain": True}, parent_id=job.id)
        return nxt
    if job.kind == JobKind.TRAIN_POLICY:
        project = projects.get(db, job.project_id)
        payload = {"limit": projects.settings_of(project).schedule.prompts_per_round, "chain": True,
                   "candidate_version_id": result.get("version_id")}
        nxt, _ = queue.enqueue(db, JobKind.SAMPLE_COMPLETIONS, job.project_id, payload, parent_id=job.id)
        return nxt
    return None


def _after_sft(db: Session, job: Job, version_id: int | None) -> Job:
    """Stage one done, the round it preceded goes on: retrain on new comparisons (reward model, then the
    policy from the SFT version), else sample a round with the SFT version as the candidate."""
    assert job.project_id is not None
    if registry_queries.count_comparisons_after(
            db, job.project_id, registry_queries.latest_trained_watermark(db, job.project_id)) > 0:
        nxt, _ = queue.enqueue(db, JobKind.TRAIN_REWARD_MODEL, job.project_id,
                               {"chain": True, "requested_by": str(job.payload.get("requested_by") or "")},
                               parent_id=job.id)
        return nxt
    project = projects.get(db, job.project_id)
    payload = {"limit": projects.settings_of(project).schedule.prompts_per_round, "chain": True,
               "candidate_version_id": version_id}
    nxt, _ = queue.enqueue(db, JobKind.SAMPLE_COMPLETIONS, job.project_id, payload, parent_id=job.id)
    return nxt


def _score_new_candidates(db: Session, job: Job, prompt_ids: list[int]) -> Job | None:
    """Score the prompts a sampling job just wrote with the active reward model, when it is one the loop
    trained (a base model from the settings is not a scorer checkpoint)."""
    assert job.project_id is not None
    reward = registry.active_version(db, job.project_id, VersionKind.REWARD)
    if not prompt_ids or reward is None or reward.data_watermark is None or not reward.checkpoint_path:
        return None
    payload = {"version_id": reward.id, "prompt_ids": prompt_ids}
    nxt, _ = queue.enqueue(db, JobKind.SCORE_PROMPTS, job.project_id, payload, parent_id=job.id)
    return nxt
