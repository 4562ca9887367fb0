"""Every SELECT/INSERT of the loop: what round planning reads about prompts, next rounds, the SFT
version, the rollout-prompt lineage of RL policy versions, the human rankings that show two policy
versions side by side, and when the last round started."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.orm import Session, aliased

from app.models import Comparison, Completion, Job, ModelVersion, ModelVersionPrompt, Prompt, Ranking, Slot
from app.models.enums import PromotionState, VersionKind, VersionRole, VersionStatus


@dataclass(frozen=True)
class PromptRow:
    """One regular prompt as planning sees it; `scores` are the stored reward-model scores of its latest
    round's candidates (completion meta), by reward-model version id, and `members` an ensemble reward
    model's per-member scores of the same candidates (None for a candidate without them)."""

    prompt_id: int
    priority: float
    ranked: bool
    pending: bool
    latest_round: int | None
    last_sampled_at: datetime | None
    scores: dict[int, list[float]]
    members: dict[int, list[list[float] | None]] = field(default_factory=dict)


def prompt_rows(db: Session, project_id: int, prompt_ids: Sequence[int] | None = None, *,
                with_scores: bool = True) -> list[PromptRow]:
    """Every non-gold prompt of the project (or of `prompt_ids`), with what planning needs (`scores`
    only `with_scores`: they read every completion's metadata)."""
    stmt = select(Prompt.id, Prompt.priority).where(Prompt.project_id == project_id, Prompt.is_gold.is_(False))
    if prompt_ids is not None:
        stmt = stmt.where(Prompt.id.in_(list(prompt_ids)))
    prompts = [(int(pid), float(priority or 0.0)) for pid, priority in db.execute(stmt.order_by(Prompt.id))]
    of_project = select(Prompt.id).where(Prompt.project_id == project_id)
    ranked = set(db.scalars(select(Ranking.prompt_id).where(Ranking.project_id == project_id).distinct()))
    pending = set(db.scalars(select(Slot.prompt_id).where(Slot.project_id == project_id, Slot.status != "done")
                             .distinct()))
    rounds: dict[int, tuple[int, datetime]] = {
        int(pid): (int(r), at) for pid, r, at in db.execute(
            select(Completion.prompt_id, func.max(Completion.round), func.max(Completion.created_at))
            .where(Completion.prompt_id.in_(of_project)).group_by(Completion.prompt_id))
    }
    scores: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    members: dict[int, dict[int, list[list[float] | None]]] = defaultdict(lambda: defaultdict(list))
    metas: list[tuple[int, int, dict[str, Any] | None]] = [
        (int(pid), int(r), meta) for pid, r, meta in db.execute(
            select(Completion.prompt_id, Completion.round, Completion.meta).where(Completion.prompt_id.in_(of_project)))
    ] if with_scores else []
    for pid, round_, meta in metas:
        latest = rounds.get(pid)
        value: Any = (meta or {}).get("rm_score")
        version: Any = (meta or {}).get("rm_score_version")
        if latest is not None and round_ == latest[0] and isinstance(value, int | float) and version is not None:
            scores[pid][int(version)].append(float(value))
            per_member: Any = (meta or {}).get("rm_members")
            members[pid][int(version)].append([float(x) for x in per_member] if isinstance(per_member, list)
                                              else None)
    return [
        PromptRow(pid, priority, pid in ranked, pid in pending,
                  rounds[pid][0] if pid in rounds else None, rounds[pid][1] if pid in rounds else None,
                  {v: list(s) for v, s in scores[pid].items()} if pid in scores else {},
                  {v: list(m) for v, m in members[pid].items()} if pid in members else {})
        for pid, priority in prompts
    ]


def human_rankings_by_prompt(db: Session, project_id: int,
                             prompt_ids: Sequence[int] | None = None) -> dict[int, list[tuple[int | None, dict[Hashable, int]]]]:
    """The rankable human rankings of each prompt as (annotator id, ranks {completion id: rank})."""
    stmt = select(Ranking.prompt_id, Ranking.annotator_id, Ranking.ranks).where(
        Ranking.project_id == project_id, Ranking.source == "human", Ranking.not_rankable.is_(False))
    if prompt_ids is not None:
        stmt = stmt.where(Ranking.prompt_id.in_(list(prompt_ids)))
    out: dict[int, list[tuple[int | None, dict[Hashable, int]]]] = defaultdict(list)
    for pid, annotator, ranks in db.execute(stmt.order_by(Ranking.id)):
        out[int(pid)].append((int(annotator) if annotator is not None else None,
                              {str(c): int(r) for c, r in (ranks or {}).items()}))
    return dict(out)


def prompts_by_id(db: Session, prompt_ids: Sequence[int]) -> dict[int, Prompt]:
    return {p.id: p for p in db.scalars(select(Prompt).where(Prompt.id.in_(list(prompt_ids))))} if prompt_ids else {}


def latest_rounds(db: Session, prompt_ids: Sequence[int]) -> dict[int, int]:
    """The highest completion round of each prompt that has completions."""
    if not prompt_ids:
        return {}
    rows = db.execute(select(Completion.prompt_id, func.max(Completion.round))
                      .where(Completion.prompt_id.in_(list(prompt_ids))).group_by(Completion.prompt_id))
    return {int(pid): int(r) for pid, r in rows}


def add_completions(db: Session, rows: Sequence[Completion]) -> None:
    db.add_all(list(rows))
    db.flush()


def first_policy_version(db: Session, project_id: int) -> ModelVersion | None:
    """The project's first finished policy version (the SFT version)."""
    stmt = select(ModelVersion).where(
        ModelVersion.project_id == project_id, ModelVersion.kind == VersionKind.POLICY,
        ModelVersion.checkpoint_path.is_not(None), ModelVersion.status != VersionStatus.TRAINING,
    )
    return db.scalars(stmt.order_by(ModelVersion.id)).first()


def sft_policy_version(db: Session, project_id: int) -> ModelVersion | None:
    """The newest finished policy version a `train_sft` job trained (rejected ones aside)."""
    stmt = select(ModelVersion).where(
        ModelVersion.project_id == project_id, ModelVersion.kind == VersionKind.POLICY,
        ModelVersion.role == VersionRole.SFT, ModelVersion.checkpoint_path.is_not(None),
        ModelVersion.status.not_in((VersionStatus.TRAINING, VersionStatus.REJECTED)),
    )
    return db.scalars(stmt.order_by(ModelVersion.id.desc())).first()


def trained_policy_counts(db: Session, project_id: int) -> tuple[int, int]:
    """(policy versions a job trained, of which SFT versions), whatever their status."""
    stmt = select(func.count(), func.count(ModelVersion.role)).where(
        ModelVersion.project_id == project_id, ModelVersion.kind == VersionKind.POLICY,
        or_(ModelVersion.job_id.is_not(None), ModelVersion.parent_id.is_not(None)))
    trained, sft = db.execute(stmt).one()
    return int(trained or 0), int(sft or 0)


def replace_prompt_lineage(db: Session, version_id: int, prompt_ids: Sequence[int]) -> None:
    """The rollout prompts of `version_id` (rows of an interrupted attempt are replaced)."""
    db.execute(delete(ModelVersionPrompt).where(ModelVersionPrompt.model_version_id == version_id))
    ids = sorted(set(prompt_ids))
    if ids:
        db.execute(insert(ModelVersionPrompt), [{"model_version_id": version_id, "prompt_id": p} for p in ids])


def prompt_lineage(db: Session, version_id: int) -> list[int]:
    stmt = select(ModelVersionPrompt.prompt_id).where(ModelVersionPrompt.model_version_id == version_id)
    return list(db.scalars(stmt.order_by(ModelVersionPrompt.prompt_id)))


def prompt_lineage_counts(db: Session, version_ids: Sequence[int]) -> dict[int, int]:
    if not version_ids:
        return {}
    stmt = (select(ModelVersionPrompt.model_version_id, func.count())
            .where(ModelVersionPrompt.model_version_id.in_(list(version_ids)))
            .group_by(ModelVersionPrompt.model_version_id))
    return {int(v): int(n) for v, n in db.execute(stmt)}


def rankings_with_both(db: Session, project_id: int, a: int, b: int) -> int:
    """Human rankings (rankable ones) that put a completion of version `a` and one of version `b` in one
    order: a ranking's comparisons hold every pair it ranked, ties included."""
    win, lose = aliased(Completion), aliased(Completion)
    stmt = (
        select(func.count(func.distinct(Comparison.ranking_id)))
        .select_from(Comparison)
        .join(Ranking, Ranking.id == Comparison.ranking_id)
        .join(win, win.id == Comparison.winner_id)
        .join(lose, lose.id == Comparison.loser_id)
        .where(
            Comparison.project_id == project_id, Ranking.source == "human", Ranking.not_rankable.is_(False),
            or_(and_(win.model_version_id == a, lose.model_version_id == b),
                and_(win.model_version_id == b, lose.model_version_id == a)),
        )
    )
    return int(db.scalar(stmt) or 0)


def provisional_policies(db: Session, project_id: int | None = None) -> list[ModelVersion]:
    """Active policy versions still waiting for people (of one project, or of all)."""
    stmt = select(ModelVersion).where(ModelVersion.kind == VersionKind.POLICY,
                                      ModelVersion.status == VersionStatus.ACTIVE,
                                      ModelVersion.promotion_state == PromotionState.PROVISIONAL)
    if project_id is not None:
        stmt = stmt.where(ModelVersion.project_id == project_id)
    return list(db.scalars(stmt.order_by(ModelVersion.id)))


def policy_versions(db: Session, project_id: int) -> list[ModelVersion]:
    """Every finished policy version of the project, oldest first (the SFT version first)."""
    stmt = select(ModelVersion).where(ModelVersion.project_id == project_id, ModelVersion.kind == VersionKind.POLICY,
                                      ModelVersion.status != VersionStatus.TRAINING)
    return list(db.scalars(stmt.order_by(ModelVersion.id)))


def open_slot_count(db: Session, project_id: int) -> int:
    stmt = select(func.count()).select_from(Slot).where(Slot.project_id == project_id, Slot.status != "done")
    return int(db.scalar(stmt) or 0)


def last_round_started_at(db: Session, project_id: int, kinds: Sequence[str]) -> datetime | None:
    """When the project's newest job of `kinds` (the jobs that start a round) was created."""
    stmt = select(func.max(Job.created_at)).where(Job.project_id == project_id, Job.kind.in_(list(kinds)))
    at: datetime | None = db.scalar(stmt)  # max() keeps the column's type, so UTC-aware on SQLite too
    return at
