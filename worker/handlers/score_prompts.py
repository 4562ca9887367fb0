"""`score_prompts`: score every candidate of the prompts still being labeled with the active reward model.

The scores go to completions.meta["rm_score"] (the ranking page's optional "RM suggests" hint and the AI
annotator read them) and, with `quality.active_selection` on, each prompt's uncertainty goes into
prompts.priority / slots.priority so the claim hands out the most uncertain prompts first
(app.quality.scoring): an ensemble reward model's disagreement, else one model's margin uncertainty. Enqueued after a reward model is promoted. Scoring reads nothing it writes, so a
retry simply scores again; everything is stored in one transaction at the end.
"""

from __future__ import annotations

from typing import Any

from app.db import unit_of_work
from app.jobs.schemas import ScorePromptsPayload
from app.quality import scoring
from app.registry import service as registry
from worker.context import JobContext, JobFailure, JobStopped
from worker.handlers.common import load_project, verified

BATCH_PROMPTS = 16


def run(ctx: JobContext) -> dict[str, Any]:
    """Score, store, set priorities; returns counts and the reward-model version used."""
    payload = ScorePromptsPayload.model_validate(ctx.payload)
    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        rm = registry.get(db, payload.version_id, project.id) if payload.version_id else \
            scoring.active_reward_version(db, project.id)
        if rm is None or not rm.checkpoint_path:
            raise JobFailure("the project has no trained reward model to score with", retryable=False)
        todo = scoring.prompts_to_score(db, project.id, payload.prompt_ids)
        rm_id, rm_name, rm_path = rm.id, rm.name, rm.checkpoint_path
    if not todo:
        return {"version_id": rm_id, "completions": 0, "prompts": 0, "priorities_set": 0}

    from worker.training.reward import RewardScorer  # lazy: torch is optional

    ctx.progress(0.02, f"loading {rm_name}")
    scorer = RewardScorer(verified(rm_path))
    scores: dict[int, float] = {}
    members: dict[int, list[float]] = {}  # an ensemble's per-member rewards, for its disagreement
    for start in range(0, len(todo), BATCH_PROMPTS):
        if ctx.should_stop():
            raise JobStopped()
        batch = todo[start : start + BATCH_PROMPTS]
        prompts = [p.prompt for p in batch for _ in p.completions]
        ids = [cid for p in batch for cid, _ in p.completions]
        texts = [text for p in batch for _, text in p.completions]
        scores.update(zip(ids, scorer.score(prompts, texts), strict=True))
        if scorer.heads > 1:
            members.update(zip(ids, scorer.score_members(prompts, texts), strict=True))
        done = min(start + BATCH_PROMPTS, len(todo))
        ctx.progress(0.05 + 0.9 * done / len(todo), f"scored {done}/{len(todo)} prompts")

    with unit_of_work(ctx.session_factory) as db:
        project = load_project(db, ctx)
        result = scoring.store_rm_scores(db, project, rm_id, scores, members)
    return {"version_id": rm_id, **result.to_dict()}
