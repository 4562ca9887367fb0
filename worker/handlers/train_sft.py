"""`train_sft`: stage one of the loop. Train the project's base policy on its demonstrations (annotator-written
and imported), register the SFT version (`role = "sft"`) with lineage rows of the demonstrations it trained
on, and make it the active policy; from then on it is the frozen KL reference of every PPO/RLOO round
(app.loop.service.sft_version). With no demonstrations nothing is trained: the base model stays the SFT
version.

Like the other training jobs, the first attempt fixes a watermark (the highest demonstration id) so retries
train on the same data, and the version row and output directory belong to the job, so a retry resumes
from the saved training state.
"""

from __future__ import annotations

import math
from typing import Any

from app.db import unit_of_work
from app.demonstrations import service as demonstrations
from app.jobs import queue
from app.jobs.schemas import TrainSftPayload
from app.loop import service as loop
from app.models.enums import VersionKind, VersionRole
from app.projects.service import settings_of
from app.registry import datasets
from app.registry import service as registry
from worker.context import JobContext, JobFailure, JobStopped
from worker.handlers.common import ensure_writable_dir, load_project, resume_step, scaled_progress, verified

# Below this many prompts with demonstrations, the loss is measured on the training demonstrations.
MIN_PROMPTS_FOR_HELDOUT = 10


def run(ctx: JobContext) -> dict[str, Any]:
    """Train and register the SFT version; returns it with the loss before/after and the data used."""
    from worker.training.checkpoint import CheckpointError  # lazy: torch is optional
    from worker.training.policy import (  # lazy: torch is optional
        Demonstration,
        PolicyRun,
        PolicyTrainConfig,
        train_policy,
    )

    payload = TrainSftPayload.model_validate(ctx.payload)
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        settings = settings_of(project)
        training, sampling = settings.training, settings.sampling
        base = loop.base_policy(db, project)
        if base is None or not base.checkpoint_path:
            raise JobFailure("the project has no policy model: set training.policy_model "
                             f"(prefloop projects configure {project.id} --policy-model PATH)", retryable=False)
        watermark = payload.watermark if payload.watermark is not None else demonstrations.watermark(db, project.id)
        if payload.watermark is None:
            queue.set_payload(db, ctx.job_id, ctx.worker_id, {"watermark": watermark})
        rows = demonstrations.for_training(db, project.id, watermark)
        if not rows:
            sft = loop.sft_version(db, project) or base
            return {"version_id": sft.id, "version": sft.name, "status": sft.status, "trained": False,
                    "demonstrations": 0, "reason": f"no demonstrations: {sft.name} stays the SFT version"}
        prompt_ids = sorted({r.prompt.id for r in rows})
        held = (datasets.heldout_prompt_ids(prompt_ids, minimum=1)
                if len(prompt_ids) >= MIN_PROMPTS_FOR_HELDOUT else set())
        train_rows = [r for r in rows if r.prompt.id not in held]
        train_demos = [Demonstration(datasets.prompt_value(r.prompt), r.text) for r in train_rows]
        heldout_demos = [Demonstration(datasets.prompt_value(r.prompt), r.text) for r in rows
                         if r.prompt.id in held] or train_demos
        batch_size = min(training.policy_batch_prompts, len(train_demos))
        steps = max(1, math.ceil(training.sft_epochs * len(train_demos) / batch_size))
        config = PolicyTrainConfig(
            algorithm="sft", seed=sampling.seed, steps=steps, learning_rate=training.sft_lr, batch_size=batch_size,
            max_new_tokens=sampling.max_new_tokens, save_every=max(1, steps // 4),
        )
        version = registry.start_version(
            db, project, VersionKind.POLICY, job_id=ctx.job_id, parent=base, base_model=base.checkpoint_path,
            training_config={**config.to_dict(), "demonstration_watermark": watermark,
                             "demonstrations": len(train_rows), "heldout_demonstrations": len(rows) - len(train_rows)},
            data_watermark=None,
        )
        version.role = VersionRole.SFT
        db.flush()
        out_dir = registry.version_dir(ctx.settings.checkpoint_dir, project.id, VersionKind.POLICY, version.id)
        version_id, version_name, base_path, base_name = version.id, version.name, base.checkpoint_path, base.name
        train_ids = [r.id for r in train_rows]
    ensure_writable_dir(out_dir)
    resumed_from = resume_step(out_dir / "train_state")

    ctx.progress(0.01, f"sft: training {version_name} from {base_name} on {len(train_demos)} demonstration(s)")
    try:
        result = train_policy(PolicyRun(
            config, policy_path=verified(base_path), output_dir=out_dir, demonstrations=train_demos,
            heldout_demonstrations=heldout_demos, progress=scaled_progress(ctx, 0.02, 0.95),
            should_stop=ctx.should_stop,
        ))
    except CheckpointError as exc:
        raise JobFailure(f"checkpoint error: {exc}", retryable=False) from exc
    if result.stopped:
        raise JobStopped()
    assert result.checkpoint is not None
    before = (result.metrics.get("before") or {}).get("sft_loss")
    after = (result.metrics.get("after") or {}).get("sft_loss")
    loss = f"; loss {before:.4f} → {after:.4f}" if before is not None and after is not None else ""
    reason = f"SFT on {len(train_ids)} demonstration(s){loss}"
    metrics = {**result.metrics, "sft_loss_before": before, "sft_loss_after": after, "history": result.history,
               "algorithm": "sft", "demonstrations": len(train_ids),
               "heldout_demonstrations": len(heldout_demos) if held else 0, "resumed_from_step": resumed_from}
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        version = registry.get(db, version_id)
        registry.record_training(db, version, checkpoint_path=str(result.checkpoint), metrics=metrics)
        demonstrations.record_lineage(db, version.id, train_ids)
        activated = loop.activate_sft(db, project, version, reason)
        status = version.status
    return {"version_id": version_id, "version": version_name, "status": status, "trained": True,
            "activated": activated, "demonstrations": len(train_ids), "reason": reason,
            "sft_loss_before": before, "sft_loss_after": after, "resumed_from_step": resumed_from}
