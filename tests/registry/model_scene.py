"""A project with the model versions a real loop round leaves behind (metrics as the worker writes them,
abridged): the base policy, a trained reward model with lineage, a rejected RLOO policy, and a job whose
result carries an arrow (→) in its reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from app.jobs import queue
from app.models import Job, ModelVersion, Project, User, utcnow
from app.registry import queries as registry_queries
from tests.factories import make_project, make_user
from tests.worker.loop_helpers import add_ranked_prompts

CALIBRATION = {"mean_probability": 0.49, "accuracy": 0.61, "ece": 0.12, "bins": [
    {"lo": 0.5, "hi": 0.55, "n": 30, "mean_confidence": 0.53, "accuracy": 0.55},
    {"lo": 0.55, "hi": 0.6, "n": 22, "mean_confidence": 0.57, "accuracy": 0.62},
    {"lo": 0.6, "hi": 0.65, "n": 12, "mean_confidence": 0.63, "accuracy": 0.70},
    {"lo": 0.7, "hi": 0.75, "n": 5, "mean_confidence": 0.72, "accuracy": 0.8}]}
REWARD_METRICS = {
    "steps": 12, "total_steps": 12, "train_pairs": 36, "device": "cpu", "world_size": 1, "train_seconds": 1.8,
    "loss_curve": [0.69, 0.68, 0.66, 0.67, 0.63, 0.6, 0.61, 0.57, 0.55, 0.54, 0.52, 0.5],
    "final_train_loss": 0.5, "train_accuracy": 0.72, "reward_bias": 0.1,
    "validation": {"curve": [{"step": 4, "loss": 0.68, "calibrated_loss": 0.67, "accuracy": 0.55},
                             {"step": 8, "loss": 0.64, "calibrated_loss": 0.63, "accuracy": 0.6},
                             {"step": 12, "loss": 0.62, "calibrated_loss": 0.6, "accuracy": 0.63}]},
    "heldout": {"n_pairs": 69, "accuracy": 0.61, "accuracy_ci95": [0.5, 0.71], "calibration": CALIBRATION,
                "length_baseline": {"accuracy": 0.4}},
    "heldout_accuracy": 0.61, "active_heldout_accuracy": None, "test_set_version": 1, "test_accuracy": 0.61,
    "test_ece": 0.12, "test_pairs": 69, "comparisons": 18, "groups": 6,
}
POLICY_METRICS = {
    "algorithm": "rloo", "steps": 4, "reward_before": 0.1726, "reward_after": 0.1597, "kl": 0.1875,
    "reward_version": "reward-v1", "train_prompts": 6, "heldout_prompts": 1, "reference_version": "policy-v0",
    "seconds": 0.7, "history": [
        {"step": float(i + 1), "reward_mean": r, "kl": k, "policy_loss": -0.01 * i}
        for i, (r, k) in enumerate([(0.005, 0.0), (0.098, -0.13), (0.12, 0.05), (0.16, 0.19)])],
}


@dataclass(frozen=True)
class ModelScene:
    project: Project
    admin: User
    annotator: User
    base: ModelVersion
    reward: ModelVersion
    policy: ModelVersion
    job: Job


def _version(db: Session, project: Project, **fields: object) -> ModelVersion:
    version = ModelVersion(project_id=project.id, base_model="tiny/base", **fields)
    db.add(version)
    db.flush()
    return version


def build(db: Session) -> ModelScene:
    project = make_project(db, k_min=2, k_max=3, annotations_per_prompt=1)
    admin, annotator = make_user(db, "admin"), make_user(db, "annotator")
    comparison_ids = add_ranked_prompts(db, project, 6)
    now = utcnow()
    base = _version(db, project, kind="policy", name="policy-v0", status="active", checkpoint_path="tiny/base",
                    status_reason="base model from project settings", activated_at=now - timedelta(hours=1))
    job, _ = queue.enqueue(db, "train_policy", project.id)
    job.status = "succeeded"
    job.result = {"version_id": None, "status": "rejected", "reason": "mean reward did not improve (0.1726 → 0.1597)",
                  "reward_before": 0.1726, "kl": 0.1875, "versions": {"policy-v1": 2, "policy-v0": 2}}
    reward = _version(db, project, kind="reward", name="reward-v1", status="active", checkpoint_path="/ckpt/rm1",
                      status_reason="held-out accuracy 0.610; no measured active reward model",
                      metrics=REWARD_METRICS, training_config={"note": "größer → besser"}, activated_at=now)
    registry_queries.insert_lineage(db, reward.id, comparison_ids)
    policy = _version(db, project, kind="policy", name="policy-v1", status="rejected", checkpoint_path="/ckpt/p1",
                      parent_id=base.id, job_id=job.id, metrics=POLICY_METRICS,
                      status_reason="mean reward did not improve (0.1726 → 0.1597)")
    db.flush()
    return ModelScene(project, admin, annotator, base, reward, policy, job)
