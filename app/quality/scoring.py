"""Reward-model scores in the database (the app side of the `score_prompts` job; no torch here).

The worker scores each candidate of the prompts still being labeled with the active reward model and
hands the numbers to `store_rm_scores`, which writes completions.meta["rm_score"] (and
meta["rm_score_version"]; an ensemble's per-member rewards in meta["rm_members"]) and, when
`quality.active_selection` is on, the prompt's uncertainty into prompts.priority and slots.priority, which
the claim orders by: the ensemble's disagreement (app.quality.active.ensemble_disagreement) when every
candidate has member rewards, else the margin uncertainty of the mean reward (margin_uncertainty). `suggestion_for` turns stored scores into the "RM suggests: B > A > D > C" hint.
Never commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.batches import batched
from app.labeling.selection import set_priorities
from app.models import Completion, ModelVersion, Project, Prompt, Slot
from app.projects.service import settings_of
from app.quality.active import ensemble_disagreement, margin_uncertainty
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
    stmt = select(Prompt).where(Prompt.project_id == project_id, Prompt.is_gold.is_(False))
    if prompt_ids is not None:
        # Batched (app.batches): a list of ids is one bind parameter each, and a project may hold 120,000.
        prompts = [p for batch in batched(sorted(set(prompt_ids)))
                   for p in db.scalars(stmt.where(Prompt.id.in_(batch)).order_by(Prompt.id))]
    else:
        pending = select(Slot.prompt_id).where(Slot.project_id == project_id, Slot.status != "done").distinct()
        prompts = list(db.scalars(stmt.where(Prompt.id.in_(pending)).order_by(Prompt.id)))
    by_prompt: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for batch in batched([p.id for p in prompts]):
        rows = db.execute(select(Completion.id, Completion.prompt_id, Completion.text)
                          .where(Completion.prompt_id.in_(batch)).order_by(Completion.id))
        for cid, pid, text in rows:
            by_prompt[int(pid)].append((int(cid), text))
    return [PromptToScore(p.id, prompt_value(p), by_prompt[p.id]) for p in prompts if len(by_prompt[p.id]) >= 2]


@dataclass(frozen=True)
class ScoreResult:
    completions: int
    prompts: int
    priorities_set: int

    def to_dict(self) -> dict[str, int]:
        return {"completions": self.completions, "prompts": self.prompts, "priorities_set": self.priorities_set}


def prompt_uncertainty(rewards: Sequence[float], members: Sequence[Sequence[float] | None]) -> float:
    """A prompt's uncertainty: the ensemble's disagreement when every candidate has member rewards."""
    if members and all(m is not None for m in members) and len({len(m or ()) for m in members}) == 1:
        matrix = [list(col) for col in zip(*[m or () for m in members], strict=True)]  # (members, candidates)
        return ensemble_disagreement(matrix)
    return margin_uncertainty(rewards)


def store_rm_scores(db: Session, project: Project, version_id: int, scores: Mapping[int, float],
                    members: Mapping[int, Sequence[float]] | None = None) -> ScoreResult:
    """Store per-completion rewards (and an ensemble's per-member rewards) and, with active selection on,
    per-prompt priorities.

    Only completions of this project are touched; the priority of a prompt is its ensemble disagreement or,
    for one reward model, the mean binary entropy of the RM's pairwise preferences over all its scored
    candidates (higher = labeled sooner).
    """
    members = members or {}
    rows = [c for batch in batched(sorted({int(c) for c in scores})) for c in db.scalars(
        select(Completion).join(Prompt, Prompt.id == Completion.prompt_id)
        .where(Prompt.project_id == project.id, Completion.id.in_(batch))
    )]
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
        priorities = {pid: prompt_uncertainty(r, member_rewards[pid]) for pid, r in rewards.items() if len(r) >= 2}
        for pid, score in priorities.items():
            db.execute(update(Prompt).where(Prompt.id == pid, Prompt.project_id == project.id).values(priority=score))
        changed = set_priorities(db, project, priorities)
    return ScoreResult(len(rows), len(rewards), changed)


def active_reward_version(db: Session, project_id: int) -> ModelVersion | None:
    return db.scalar(select(ModelVersion).where(ModelVersion.project_id == project_id,
                                                ModelVersion.kind == "reward", ModelVersion.status == "active"))


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
    metas: dict[int, Any] = dict(db.execute(select(Completion.id, Completion.meta).where(Completion.id.in_(list(shown_ids)))).all())
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
    from app.jobs import queue  # local: the job queue is only needed on this path

    result = job.result or {}
    if job.kind != "train_reward_model" or job.project_id is None or result.get("status") != "active":
        return None
    project = db.get(Project, job.project_id)
    if project is None:
        return None
    cfg = settings_of(project).quality
    if not (cfg.active_selection or cfg.show_rm_suggestion):
        return None
    queued, _ = queue.enqueue(db, "score_prompts", project.id, {"version_id": result.get("version_id")},
                              parent_id=job.id)
    return queued
