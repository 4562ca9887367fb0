"""`train_policy`: improve the active policy against the active reward model (PPO, RLOO) or on the rankings
directly (DPO), evaluate on held-out prompts before and after, and decide promotion. DPO reads the same
rankings as reward training (app.registry.datasets.trains_on: the AI-ranking training policy).

The run starts from the active policy. PPO/RLOO take their KL against the frozen reference of
`training.reference` (app.loop.service.reference_for: the SFT version by default, so the policy does not
drift from it round after round; "previous" for the starting policy), recorded on the version as
`reference_version_id`, with the reward model as `reward_version_id` and the rollout prompts as lineage
rows (DPO: the comparisons). Metrics keep the per-step history for the plots on the models page. Like
reward training, the version row and output directory belong to the job, so a retry resumes from the
saved training state. A version the gates promote is provisional until people confirm it
(app.loop.promotion, `training.confirm_rankings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.db import unit_of_work
from app.jobs import queue
from app.jobs.schemas import TrainPolicyPayload
from app.loop import promotion
from app.loop import service as loop
from app.models.enums import VersionKind
from app.projects.service import settings_of
from app.registry import datasets
from app.registry import queries as registry_queries
from app.registry import service as registry
from worker.context import JobContext, JobFailure, JobStopped
from worker.handlers.common import (
    data_watermark,
    ensure_writable_dir,
    load_project,
    no_data_message,
    ranking_groups,
    resume_step,
    scaled_progress,
    verified,
)


def usable_judges(ctx: JobContext, judges: dict[str, str]) -> dict[str, Path]:
    """The judge checkpoints that still verify; a missing or damaged one is skipped with a note (it is a
    second opinion, not something the job needs)."""
    usable = {}
    for name, path in judges.items():
        try:
            usable[name] = verified(path)
        except JobFailure as exc:
            ctx.progress(0.01, f"not asking {name} for a second opinion: {exc}")
    return usable


def run(ctx: JobContext) -> dict[str, Any]:
    """Train, evaluate, record and decide; returns the version with reward before/after and KL."""
    from worker.training.checkpoint import CheckpointError  # lazy: torch is optional
    from worker.training.policy import PolicyRun, PolicyTrainConfig, train_policy  # lazy: torch is optional

    payload = TrainPolicyPayload.model_validate(ctx.payload)
    watermark = data_watermark(ctx, payload.watermark,
                               needed=lambda project: settings_of(project).training.algorithm == "dpo")
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        settings = settings_of(project)
        training, sampling = settings.training, settings.sampling
        policy = registry.ensure_base_version(db, project, VersionKind.POLICY)
        reward = registry.ensure_base_version(db, project, VersionKind.REWARD)
        if policy is None or not policy.checkpoint_path:
            raise JobFailure("the project has no policy model: set training.policy_model "
                             f"(prefloop projects configure {project.id} --policy-model PATH)", retryable=False)
        if reward is None or not reward.checkpoint_path:
            raise JobFailure("the project has no active reward model: set training.reward_model "
                             f"(prefloop projects configure {project.id} --reward-model PATH)", retryable=False)
        # The fixed test set (app.registry.service.extend_test_set) stays out of rollouts and DPO pairs, so
        # reward models and policies are measured on prompts no model trained on.
        test_ids = registry.test_set_prompt_ids(db, project.id)
        prompts = [(pid, p) for pid, p in datasets.project_prompts(db, project.id) if pid not in test_ids]
        if not prompts:
            raise JobFailure("the project has no prompts to train the policy on (outside its test set)",
                             retryable=False)
        held_ids = datasets.heldout_prompt_ids([pid for pid, _ in prompts], minimum=min(8, len(prompts) // 4))
        train_pairs = [(pid, p) for pid, p in prompts if pid not in held_ids] or prompts
        train_prompts = [p for _, p in train_pairs]
        heldout_prompts = [p for pid, p in prompts if pid in held_ids] or train_prompts
        algorithm = training.algorithm
        groups: list[dict[str, Any]] = []
        comparison_ids: list[int] = []
        if algorithm == "dpo":
            if watermark is None:  # the algorithm changed to DPO since the watermark was (not) taken
                raise JobFailure("the project switched to DPO while this job started; the retry takes a watermark")
            if payload.watermark is None:
                queue.set_payload(db, ctx.job_id, ctx.worker_id, {"watermark": watermark})
            snapshot = datasets.load_snapshot(db, project.id, watermark, training.ai_rankings)
            trained_part, _ = datasets.split_snapshot(snapshot, test_ids)
            groups, comparison_ids = trained_part.groups, trained_part.comparison_ids
            if not groups:
                raise JobFailure(no_data_message(snapshot, project.id, training.ai_rankings,
                                                 lead="DPO needs rankings; none"), retryable=False)
        kl_step = loop.kl_step(db, project) if algorithm in ("ppo", "rloo") else None
        config = PolicyTrainConfig(
            algorithm=algorithm, seed=sampling.seed, steps=training.policy_steps, learning_rate=training.policy_lr,
            kl_coef=kl_step.coef if kl_step is not None else training.kl_beta, dpo_beta=training.dpo_beta,
            kl_stop=kl_step.stop if kl_step is not None else None,
            temperature=sampling.temperature if sampling.temperature > 0 else 1.0, top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            rollout_batch_size=min(training.policy_batch_prompts, len(train_prompts)),
            batch_size=min(training.policy_batch_prompts, max(1, len(groups))),
            num_samples=training.rloo_k if algorithm == "rloo" else None,
            save_every=max(1, training.policy_steps // 4),
        )
        reference = loop.reference_for(db, project, policy) if algorithm in ("ppo", "rloo") else policy
        version = registry.start_version(
            db, project, VersionKind.POLICY, job_id=ctx.job_id, parent=policy, base_model=policy.checkpoint_path,
            training_config={**config.to_dict(), "reward_version_id": reward.id, "reward_version": reward.name,
                             "reference": training.reference, "reference_version": reference.name,
                             "kl_schedule": kl_step.as_dict() if kl_step is not None else None},
            data_watermark=watermark if algorithm == "dpo" else reward.data_watermark,
        )
        version.reference_version_id = reference.id
        version.reward_version_id = reward.id if algorithm in ("ppo", "rloo") else None
        reference_path, reference_name = str(reference.checkpoint_path), reference.name
        rollout_prompt_ids = [pid for pid, _ in train_pairs] if algorithm in ("ppo", "rloo") else []
        out_dir = registry.version_dir(ctx.settings.checkpoint_dir, project.id, VersionKind.POLICY, version.id)
        version_id, version_name = version.id, version.name
        policy_path, reward_path, reward_name = policy.checkpoint_path, reward.checkpoint_path, reward.name
        kl_budget = training.kl_budget
        # A reward model trained on newer rankings than the active one (but not promoted) judges too.
        fresher = registry_queries.fresher_reward_version(db, project.id, reward)
        judges = {fresher.name: str(fresher.checkpoint_path)} if fresher is not None else {}
    ensure_writable_dir(out_dir)
    resumed_from = resume_step(out_dir / "train_state")

    ctx.progress(0.01, f"{algorithm}: training {version_name} from the active policy against {reward_name}, "
                       f"KL to {reference_name}")
    try:
        result = train_policy(PolicyRun(
            config, policy_path=verified(policy_path), output_dir=out_dir, prompts=train_prompts,
            reference_path=verified(reference_path),
            reward_model_path=verified(reward_path), groups=ranking_groups(groups) if groups else None,
            heldout_prompts=heldout_prompts, progress=scaled_progress(ctx, 0.02, 0.95), should_stop=ctx.should_stop,
            judge_model_paths=usable_judges(ctx, judges),
        ))
    except CheckpointError as exc:
        raise JobFailure(f"checkpoint error: {exc}", retryable=False) from exc
    if result.stopped:
        raise JobStopped()
    assert result.checkpoint is not None
    before, after = result.metrics.get("before") or {}, result.metrics.get("after") or {}
    reward_before, reward_after, kl = before.get("reward_mean"), after.get("reward_mean"), after.get("kl")
    judged = {name: (before[f"reward_mean@{name}"], after[f"reward_mean@{name}"]) for name in judges
              if f"reward_mean@{name}" in before and f"reward_mean@{name}" in after}
    decision = registry.policy_decision(reward_before, reward_after, kl, kl_budget, judged)
    metrics = {**result.metrics, "reward_before": reward_before, "reward_after": reward_after, "kl": kl,
               "history": result.history, "algorithm": algorithm, "reward_version": reward_name,
               "judges": {name: {"before": b, "after": a} for name, (b, a) in judged.items()},
               "train_prompts": len(train_prompts), "heldout_prompts": len(heldout_prompts),
               "reference_version": reference_name, "kl_to_reference": kl,
               "resumed_from_step": resumed_from}
    with unit_of_work(ctx.session_factory) as db:
        version = registry.get(db, version_id)
        registry.record_training(db, version, checkpoint_path=str(result.checkpoint), metrics=metrics,
                                 comparison_ids=comparison_ids)
        loop.record_rollout_lineage(db, version.id, rollout_prompt_ids)
        promotion.gate(db, load_project(db, ctx), version, decision)
        status, promotion_state = version.status, version.promotion_state
    return {"version_id": version_id, "version": version_name, "status": status, "reason": decision.reason,
            "promotion_state": promotion_state,
            "reward_before": reward_before, "reward_after": reward_after, "kl": kl, "algorithm": algorithm,
            "reference_version": reference_name, "kl_stopped_at": result.metrics.get("kl_stopped_at"),
            "resumed_from_step": resumed_from}
