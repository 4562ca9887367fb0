"""`train_reward_model`: train a new reward model on the comparisons up to the job's watermark.

Training data: the rankings app.registry.datasets.trains_on admits (the AI-ranking training policy,
`training.ai_rankings`).

The watermark (max comparison id at the first attempt) is stored in the payload, and the version row and
its output directory are created once per job, so a retry after a crash reads exactly the same groups
(checked by the snapshot hash) and resumes from the saved training state. Training starts from the
project's base reward model on every group but those of the project's fixed test set.

The test set (app.registry.service.extend_test_set) grows at the first attempt by appending a version (its
number is stored in the payload too); the new model and the active one are measured on the human rankings
of that same test-set version, the promotion rule in app.registry.service decides, and both models' metrics
record the accuracy and calibration under the test-set version (`test_sets`), so accuracies of different
versions are compared like for like.
"""

from __future__ import annotations

import math
import shutil
from typing import Any

from app.db import unit_of_work
from app.jobs import queue
from app.jobs.schemas import TrainRewardModelPayload
from app.models.enums import VersionKind, VersionStatus
from app.projects.service import settings_of
from app.quality.weights import recompute_trust_weights
from app.registry import datasets
from app.registry import service as registry
from worker.context import JobContext, JobFailure, JobStopped
from worker.handlers.common import (
    data_watermark,
    ensure_writable_dir,
    is_prefloop_checkpoint,
    load_project,
    no_data_message,
    ranking_groups,
    resume_step,
    scaled_progress,
    verified,
)

# Resume states of a run whose schedule the trainer plans itself (unset epochs or batch): every this many steps.
_AUTO_CHECKPOINT_EVERY = 25


def _checkpoint_every(groups: int, batch_prompts: int | None, epochs: int | None) -> int:
    """About four resume states per run when the schedule is set; a fixed cadence when the plan picks it."""
    if batch_prompts is None or epochs is None:
        return _AUTO_CHECKPOINT_EVERY
    total_steps = max(1, math.ceil(math.ceil(groups / batch_prompts) * epochs))
    return max(1, total_steps // 4) if total_steps >= 4 else 0


def run(ctx: JobContext) -> dict[str, Any]:
    """Train, measure, record lineage and decide promotion; returns the version and its held-out accuracy."""
    from worker.training.checkpoint import CheckpointError  # lazy: torch is optional
    from worker.training.reward import (  # lazy: torch is optional
        RewardScorer,
        RewardTrainConfig,
        train_reward_model,
    )

    payload = TrainRewardModelPayload.model_validate(ctx.payload)
    watermark = data_watermark(ctx, payload.watermark)
    assert watermark is not None
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        training = settings_of(project).training
        active = registry.ensure_base_version(db, project, VersionKind.REWARD)
        base = training.reward_model or (active.base_model if active else "")
        if not base:
            raise JobFailure("the project has no reward model: set training.reward_model "
                             f"(prefloop projects configure {project.id} --reward-model PATH)", retryable=False)
        if payload.watermark is None:
            queue.set_payload(db, ctx.job_id, ctx.worker_id, {"watermark": watermark})
            # First attempt only: store current trust weights so the snapshot trains on them; a retry
            # keeps them (recomputing would change the snapshot hash it checks).
            recompute_trust_weights(db, project)
        snapshot = datasets.load_snapshot(db, project.id, watermark, training.ai_rankings)
        if not snapshot.groups:
            raise JobFailure(no_data_message(snapshot, project.id, training.ai_rankings), retryable=False)
        if payload.test_set_version is None:
            test_set = registry.extend_test_set(db, project, watermark)
            queue.set_payload(db, ctx.job_id, ctx.worker_id, {"test_set_version": test_set.version})
        else:
            test_set = registry.test_set(db, project.id, payload.test_set_version)
        # Training leaves out every test-set prompt (also those of a newer version than the job's).
        trained_part, _ = datasets.split_snapshot(snapshot, registry.test_set_prompt_ids(db, project.id))
        train = ranking_groups(trained_part.groups)
        heldout = ranking_groups(registry.test_set_groups(db, project.id, test_set))
        if not train:
            raise JobFailure(f"every ranked prompt is in the test set (version {test_set.version}); "
                             "rank more prompts or lower training.rm_heldout_fraction", retryable=False)
        config = RewardTrainConfig(
            base_model=base, epochs=None if training.rm_epochs is None else float(training.rm_epochs),
            lr=training.rm_lr, batch_prompts=training.rm_batch_prompts, seed=0,
            checkpoint_every=_checkpoint_every(len(train), training.rm_batch_prompts, training.rm_epochs),
            heldout_fraction=training.rm_heldout_fraction, share_prefix=training.rm_share_prefix,
            ensemble_heads=training.rm_ensemble_heads,
            extra={"job_id": ctx.job_id, "project_id": project.id, "watermark": watermark},
        )
        version = registry.start_version(
            db, project, VersionKind.REWARD, job_id=ctx.job_id, parent=active, base_model=base,
            training_config=config.to_dict(), data_watermark=watermark,
        )
        if version.data_snapshot_hash and version.data_snapshot_hash != snapshot.snapshot_hash:
            raise JobFailure(f"the comparisons up to id {watermark} changed since the first attempt "
                             "(deleted or re-weighted, or training.ai_rankings changed); start a new training job",
                             retryable=False)
        version.data_snapshot_hash = snapshot.snapshot_hash
        out_dir = registry.version_dir(ctx.settings.checkpoint_dir, project.id, VersionKind.REWARD, version.id)
        version_id, version_name = version.id, version.name
        active_path = active.checkpoint_path if active is not None and active.status == VersionStatus.ACTIVE else None
        active_id = active.id if active is not None else None
        tolerance = training.rm_accuracy_tolerance
    ensure_writable_dir(out_dir)
    resumed_from = resume_step(out_dir / "state")

    ctx.progress(0.01, f"training {version_name} on {len(train)} groups ({len(trained_part.comparison_ids)} "
                       f"comparisons; test set v{test_set.version}: {len(heldout)} groups held out)")
    try:
        try:
            result = train_reward_model(config, train, heldout, out_dir, progress=scaled_progress(ctx, 0.02, 0.9),
                                        should_stop=ctx.should_stop)
        except CheckpointError as exc:
            if "cannot resume" not in str(exc):
                raise
            shutil.rmtree(out_dir / "state", ignore_errors=True)  # settings changed: start this job over
            result = train_reward_model(config, train, heldout, out_dir, progress=scaled_progress(ctx, 0.02, 0.9),
                                        should_stop=ctx.should_stop)
        if result.stopped:
            raise JobStopped()
        assert result.checkpoint is not None
        new_accuracy = result.metrics.get("heldout", {}).get("accuracy") if heldout else None
        active_accuracy = None
        active_metrics = None
        if heldout and active_path and is_prefloop_checkpoint(active_path):
            ctx.progress(0.93, f"measuring the active reward model on test set v{test_set.version}")
            active_metrics = RewardScorer(verified(active_path)).evaluate(heldout)
            active_accuracy = active_metrics["accuracy"]
    except CheckpointError as exc:
        raise JobFailure(f"checkpoint error: {exc}", retryable=False) from exc

    decision = registry.reward_decision(new_accuracy, active_accuracy, tolerance)
    test = registry.test_score(test_set, result.metrics.get("heldout") if heldout else None)
    metrics = {**result.metrics, "heldout_accuracy": new_accuracy, "active_heldout_accuracy": active_accuracy,
               "test_set_version": test_set.version, "test_accuracy": test["accuracy"] if test else None,
               "test_ece": test["ece"] if test else None, "test_pairs": test["n_pairs"] if test else 0,
               "active_test_accuracy": active_accuracy, "test_sets": {str(test_set.version): test} if test else {},
               "comparisons": len(trained_part.comparison_ids), "groups": len(train) + len(heldout),
               "heldout_groups": len(heldout), "test_prompts": len(test_set.prompt_ids),
               "resumed_from_step": resumed_from}
    with unit_of_work(ctx.session_factory) as db:
        version = registry.get(db, version_id)
        registry.record_training(db, version, checkpoint_path=str(result.checkpoint), metrics=metrics,
                                 comparison_ids=trained_part.comparison_ids, snapshot_hash=snapshot.snapshot_hash)
        if active_metrics is not None and active_id is not None:
            registry.record_test_score(db, registry.get(db, active_id), test_set, active_metrics)
        registry.apply_decision(db, version, decision)
        status = version.status
    return {"version_id": version_id, "version": version_name, "status": status, "reason": decision.reason,
            "heldout_accuracy": new_accuracy, "active_heldout_accuracy": active_accuracy,
            "test_set_version": test_set.version, "test_accuracy": metrics["test_accuracy"],
            "comparisons": len(trained_part.comparison_ids), "watermark": watermark, "resumed_from_step": resumed_from}
