"""`sample_completions`: the active policy writes K candidates for prompts that have none, then slots open.

Prompts are sampled in small batches (each prompt encoded once and its KV cache shared by its K samples,
see worker.training.sampling); `should_stop` is checked between batches. Completions record the policy
version that sampled them. Everything is written in one transaction at the end, so a crash writes nothing.
"""

from __future__ import annotations

from typing import Any

from app.db import unit_of_work
from app.jobs.schemas import SampleCompletionsPayload
from app.models import Completion
from app.projects.service import settings_of
from app.registry import datasets
from app.registry import service as registry
from worker.context import JobContext, JobFailure, JobStopped
from worker.handlers.common import load_project, verified, version_round

BATCH_PROMPTS = 8


def storable(text: str) -> str:
    """Generated text as the database can hold it: Postgres text refuses NUL, which a byte-level model
    can emit, so it becomes U+FFFD (the character the decoder already uses for broken bytes)."""
    return text.replace("\x00", "\ufffd")


def run(ctx: JobContext) -> dict[str, Any]:
    """Sample, store and open slots; returns counts and the policy version used."""
    payload = SampleCompletionsPayload.model_validate(ctx.payload)
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        settings = settings_of(project)
        policy = registry.ensure_base_version(db, project, "policy")
        if policy is None or not policy.checkpoint_path:
            raise JobFailure("the project has no policy model: set training.policy_model "
                             f"(prefloop projects configure {project.id} --policy-model PATH)", retryable=False)
        limit = payload.limit or (None if payload.prompt_ids else settings.schedule.prompts_per_round)
        todo = datasets.prompts_without_completions(db, project.id, limit=limit, prompt_ids=payload.prompt_ids)
        k = settings.sampling.k or project.k_max
        policy_id, policy_name, policy_path = policy.id, policy.name, policy.checkpoint_path
    if not todo:
        return {"prompts": 0, "completions": 0, "policy_version_id": policy_id}

    from worker.training.sampling import load_policy, sample_completions

    ctx.progress(0.02, f"loading {policy_name}")
    model, tokenizer = load_policy(verified(policy_path))
    sampling = settings.sampling
    texts: dict[int, list[str]] = {}
    for start in range(0, len(todo), BATCH_PROMPTS):
        if ctx.should_stop():
            raise JobStopped()
        batch = todo[start : start + BATCH_PROMPTS]
        samples = sample_completions(
            model, tokenizer, [p for _, p in batch], k, temperature=sampling.temperature, top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens, seed=sampling.seed, batch_size=BATCH_PROMPTS,
            prompt_keys=[prompt_id for prompt_id, _ in batch],  # a retry samples each prompt identically
        )
        for (prompt_id, _), outs in zip(batch, samples, strict=True):
            texts[prompt_id] = outs
        done = min(start + BATCH_PROMPTS, len(todo))
        ctx.progress(0.05 + 0.9 * done / len(todo), f"sampled {done}/{len(todo)} prompts × {k}")

    from app.labeling.slots import ensure_slots

    round_number = version_round(policy_name)
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        # Another job may have filled some prompts meanwhile (e.g. an upload): never mix two candidate sets.
        still_empty = {pid for pid, _ in datasets.prompts_without_completions(db, project.id, prompt_ids=list(texts))}
        rows = [
            Completion(prompt_id=pid, position=i, text=storable(text), source="model", model_name=policy_name,
                       model_version_id=policy_id, round=round_number, meta={"job_id": ctx.job_id})
            for pid, outs in texts.items() if pid in still_empty for i, text in enumerate(outs)
        ]
        db.add_all(rows)
        db.flush()
        slots = ensure_slots(db, project, sorted(still_empty))
    return {"prompts": len(still_empty), "completions": len(rows), "k": k, "slots": slots,
            "policy_version_id": policy_id, "policy_version": policy_name, "round": round_number}
