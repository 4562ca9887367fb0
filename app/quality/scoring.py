"""Reward-model scores in the database (the app side of the `score_prompts` job; no torch here).

The worker scores each candidate of the prompts still being labeled with the active reward model and
hands the numbers to `store_rm_scores`, which writes completions.meta["rm_score"] (and
meta["rm_score_version"]; an ensemble's per-member rewards in meta["rm_members"]) and, when
`quality.active_selection` is on, each prompt's priority into prompts.priority and slots.priority, which
the claim orders by. The priority is app.quality.stats.active.prompt_priorities (the selection policy, also
behind the loop's "uncertain" tier): the ensemble's disagreement when every candidate has member rewards,
else the margin uncertainty of the mean reward. `suggestion_for` turns stored scores into the
"RM suggests: B > A > D > C" hint. Never commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.jobs import queue
from app.labeling.selection import set_priorities
from app.models import ModelVersion, Project
from app.models.enums import JobKind, VersionStatus
from app.projects.service import settings_of
from app.quality import queries
from app.quality.stats.active import prompt_priorities
from app.registry.datasets import PromptValue, prompt_value

LETTERS = "ABCDEFGHIJKLMNOP"


@dataclass(frozen=True)
class PromptToScore:
    """One prompt and its candidates, as the worker scores them."""

    prompt_id: int
    prompt: PromptValue
    completions: list[tuple[int, str]]


def prompts_to_score(db: Session, project_id: int, prompt_ids: Sequence[int] | None = None) -> list[PromptToScore]:
    """Regular prompts with a slot not yet done (still to be labeled), or the given prompts.

    Gold prompts are never scored: an RM hint on a check item would measure the hint, not the annotator.
    """
    prompts = queries.prompts_to_score(db, project_id, prompt_ids)
    by_prompt = queries.completion_texts(db, [p.id for p in prompts])
    return [PromptToScore(p.id, prompt_value(p), by_prompt[p.id]) for p in prompts
            if len(by_prompt.get(p.id, [])) >= 2]


@dataclass(frozen=True)
class ScoreResult:
    completions: int
    prompts: int
    priorities_set: int

    def to_dict(self) -> dict[str, int]:
        return {"completions": self.completions, "prompts": self.prompts, "priorities_set": self.priorities_set}


def store_rm_scores(db: Session, project: Project, version_id: int, scores: Mapping[int, float],
                    members: Mapping[int, Sequence[float]] | None = None) -> ScoreResult:
    """Store per-completion rewards (and an ensemble's per-member rewards) and, with active selection on,
    per-prompt priorities.

    Only completions of this project are touched; the priority of a prompt is its ensemble disagreement or,
    for one reward model, the mean binary entropy of the RM's pairwise preferences over all its scored
    candidates (higher = labeled sooner).
    """
    members = members or {}
    rows = queries.project_completions(db, project.id, scores)
    rewards: dict[int, list[float]] = defaultdict(list)
    member_rewards: dict[int, list[list[float] | None]] = defaultdict(list)
    for c in rows:
        value = float(scores[c.id])
        per_member = [float(x) for x in members[c.id]] if c.id in members else None
        # A new dict: JSON columns only notice reassignment, not in-place mutation.
        meta = {k: v for k, v in (c.meta or {}).items() if k != "rm_members"}
        c.meta = {**meta, "rm_score": value, "rm_score_version": int(version_id),
                  **({"rm_members": per_member} if per_member is not None else {})}
        rewards[c.prompt_id].append(value)
        member_rewards[c.prompt_id].append(per_member)
    db.flush()
    changed = 0
    if settings_of(project).quality.active_selection and rewards:
        priorities = prompt_priorities(rewards, member_rewards)
        queries.set_prompt_priorities(db, project.id, priorities)
        changed = set_priorities(db, project, priorities)
    return ScoreResult(len(rows), len(rewards), changed)


def active_reward_version(db: Session, project_id: int) -> ModelVersion | None:
    """The project's active reward-model version (whose stored scores count), or None."""
    return queries.active_reward_version(db, project_id)


def suggestion_for(db: Session, project: Project, shown_ids: Sequence[int]) -> dict[str, Any] | None:
    """The RM's suggested order of the shown completions, when the project shows suggestions and every
    shown completion has a score from the active reward model; None otherwise.

    Letters follow the display order (A = first shown), as on the ranking page.
    """
    if not settings_of(project).quality.show_rm_suggestion or len(shown_ids) < 2:
        return None
    active = active_reward_version(db, project.id)
    if active is None:
        return None
    metas = queries.completion_metas(db, shown_ids)
    scores: dict[int, float] = {}
    for cid in shown_ids:
        meta: Mapping[str, Any] = metas.get(cid) or {}
        if meta.get("rm_score_version") != active.id or not isinstance(meta.get("rm_score"), int | float):
            return None
        scores[cid] = float(meta["rm_score"])
    letter = {cid: LETTERS[i] for i, cid in enumerate(shown_ids)}
    order = sorted(shown_ids, key=lambda c: (-scores[c], shown_ids.index(c)))
    return {
        "order": order,
        "text": " > ".join(letter[c] for c in order),
        "scores": {str(c): scores[c] for c in shown_ids},
        "model_version_id": active.id,
    }


def enqueue_after_promotion(db: Session, job: Any) -> Any | None:
    """After a train_reward_model job whose version became active, queue `score_prompts` when the project
    uses the scores (active selection or RM suggestions). Returns the queued job, or None."""
    result = job.result or {}
    if job.kind != JobKind.TRAIN_REWARD_MODEL or job.project_id is None \
            or result.get("status") != VersionStatus.ACTIVE:
        return None
    project = db.get(Project, job.project_id)
    if project is None:
        return None
    cfg = settings_of(project).quality
    if not (cfg.active_selection or cfg.show_rm_suggestion):
        return None
    queued, _ = queue.enqueue(db, JobKind.SCORE_PROMPTS, project.id, {"version_id": result.get("version_id")},
                              parent_id=job.id)
    return queued
