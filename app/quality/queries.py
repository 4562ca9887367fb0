"""Every statement of quality control: rankings as `RankingRecord`s, gold specs and gold items, reward-model
versions, stored trust weights, reward-model scores and prompt priorities, AI annotator users (the
statistics in app.quality.stats never see a row)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from app.batches import batched
from app.models import Assignment, Comparison, Completion, ModelVersion, Prompt, Ranking, Slot, User
from app.models.enums import VersionKind, VersionStatus
from app.quality.stats.gold import GoldSpec
from app.quality.stats.records import Id, RankingRecord

# Imported chosen/rejected pairs carry no annotator judgement we can assess: quality looks at these only.
ASSESSED_SOURCES = ("human", "ai")


@dataclass(frozen=True)
class CompletionInfo:
    """What quality control needs of a completion: its prompt, length in words and producing model."""

    id: int
    prompt_id: int
    words: int
    model: str | None


def fingerprint(db: Session, project_id: int) -> tuple[Any, ...]:
    """A cheap summary that changes whenever the report's inputs change (cache key)."""
    # The version sum moves when an annotator changes a ranking in place (app.labeling.revision).
    rankings = db.execute(
        select(func.count(), func.max(Ranking.id), func.coalesce(func.sum(Ranking.version), 0)).where(
            Ranking.project_id == project_id, Ranking.source.in_(ASSESSED_SOURCES)
        )
    ).one()
    gold = db.execute(
        select(func.count(), func.max(Prompt.id)).where(Prompt.project_id == project_id, Prompt.is_gold.is_(True))
    ).one()
    versions = db.execute(
        select(func.count(), func.max(ModelVersion.id)).where(ModelVersion.project_id == project_id)
    ).one()
    return (tuple(rankings), tuple(gold), tuple(versions))


def completion_info(db: Session, prompt_ids: Iterable[int]) -> dict[int, CompletionInfo]:
    """Completions of the given prompts with their word counts and model (policy version name, else the
    uploaded model name)."""
    ids = sorted(set(prompt_ids))
    out: dict[int, CompletionInfo] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = db.execute(
            select(Completion.id, Completion.prompt_id, Completion.text, Completion.model_name, ModelVersion.name)
            .outerjoin(ModelVersion, ModelVersion.id == Completion.model_version_id)
            .where(Completion.prompt_id.in_(chunk))
        ).all()
        for cid, pid, text, model_name, version_name in rows:
            out[int(cid)] = CompletionInfo(int(cid), int(pid), len((text or "").split()), version_name or model_name)
    return out


def _seconds(active: float | None, wall: float | None) -> float | None:
    value = active if active is not None else wall
    return float(value) if value is not None and math.isfinite(value) else None


def load_records(db: Session, project_id: int) -> list[RankingRecord]:
    """Every human and AI ranking of the project (not-rankable ones left out: they order nothing),
    oldest first, with lengths, time on task, gold marks and the model behind each completion."""
    rows = db.execute(
        select(
            Ranking.id, Ranking.prompt_id, Ranking.annotator_id, Ranking.source, Ranking.ranks,
            Ranking.shown_order, Ranking.active_seconds, Ranking.wall_seconds, Ranking.created_at,
            User.is_ai, Prompt.is_gold,
        )
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .outerjoin(User, User.id == Ranking.annotator_id)
        .where(
            Ranking.project_id == project_id,
            Ranking.source.in_(ASSESSED_SOURCES),
            Ranking.not_rankable.is_(False),
        )
        .order_by(Ranking.id)
    ).all()
    info = completion_info(db, (int(r.prompt_id) for r in rows))
    records: list[RankingRecord] = []
    for r in rows:
        ranks: dict[Id, int] = {int(cid): int(rank) for cid, rank in (r.ranks or {}).items()}
        if len(ranks) < 2:
            continue
        shown = [int(c) for c in (r.shown_order or []) if int(c) in ranks]
        if set(shown) != set(ranks):
            shown = sorted(int(cast(int, c)) for c in ranks)  # an inconsistent shown order cannot support a position-bias claim
        models: dict[Id, str] = {}
        for c in ranks:
            model = info[c].model if c in info else None
            if model:
                models[c] = model
        records.append(
            RankingRecord(
                ranking_id=int(r.id),
                prompt_id=int(r.prompt_id),
                annotator_id=int(r.annotator_id) if r.annotator_id is not None else f"deleted-{r.id}",
                ranks=ranks,
                shown_order=shown,
                lengths={c: info[c].words for c in ranks if c in info},
                seconds=_seconds(r.active_seconds, r.wall_seconds),
                is_ai=bool(r.is_ai) or r.source == "ai",
                is_gold=bool(r.is_gold),
                model_of=models or None,
                created_at=r.created_at,
            )
        )
    return records


def gold_specs(db: Session, project_id: int) -> dict[Id, GoldSpec]:
    """The gold specs of the project's gold prompts (constraints stored over completion ids)."""
    rows = db.execute(
        select(Prompt.id, Prompt.gold_spec).where(Prompt.project_id == project_id, Prompt.is_gold.is_(True))
    ).all()
    out: dict[Id, GoldSpec] = {}
    for pid, spec in rows:
        constraints = (spec or {}).get("constraints") or []
        if constraints:
            out[int(pid)] = GoldSpec.parse(int(pid), constraints)
    return out


def annotator_gold_rankings(db: Session, project_id: int, annotator_id: int) -> list[tuple[dict[Id, int], Any]]:
    """(ranks, gold spec JSON) of every gold prompt this annotator ranked in the project."""
    rows = db.execute(
        select(Ranking.ranks, Prompt.gold_spec)
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .where(
            Ranking.project_id == project_id,
            Ranking.annotator_id == annotator_id,
            Prompt.is_gold.is_(True),
            Ranking.not_rankable.is_(False),
        )
    ).all()
    out: list[tuple[dict[Id, int], Any]] = []
    for ranks, spec in rows:
        parsed: dict[Id, int] = {int(k): int(v) for k, v in (ranks or {}).items()}
        out.append((parsed, spec))
    return out


def users(db: Session, ids: Iterable[Any]) -> dict[int, User]:
    wanted = sorted({i for i in ids if isinstance(i, int)})
    if not wanted:
        return {}
    return {u.id: u for batch in batched(wanted) for u in db.scalars(select(User).where(User.id.in_(batch)))}


def reward_versions(db: Session, project_id: int) -> list[ModelVersion]:
    """Reward-model versions of the project, oldest first."""
    return list(
        db.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project_id, ModelVersion.kind == VersionKind.REWARD)
            .order_by(ModelVersion.id)
        )
    )


def prompt(db: Session, prompt_id: int) -> Prompt | None:
    return db.get(Prompt, prompt_id)


def prompts(db: Session, ids: Sequence[int]) -> dict[int, Prompt]:
    return {p.id: p for batch in batched(sorted(set(ids))) for p in db.scalars(select(Prompt).where(Prompt.id.in_(batch)))}


def completions_of(db: Session, prompt_ids: Sequence[int]) -> dict[int, list[Completion]]:
    """Completions per prompt, by position then id."""
    out: dict[int, list[Completion]] = {p: [] for p in prompt_ids}
    # Batched (app.batches): gold generation asks for every prompt of a project, 120,000 of them at times.
    for batch in batched(sorted(out)):
        stmt = select(Completion).where(Completion.prompt_id.in_(batch)).order_by(
            Completion.prompt_id, Completion.position, Completion.id
        )
        for c in db.scalars(stmt):
            out[c.prompt_id].append(c)
    return out


def store_ranking_weights(db: Session, project_id: int, weights: Mapping[int, float]) -> int:
    """Write rankings.weight and the weight of each ranking's comparisons; returns rankings updated."""
    params = [{"rid": int(rid), "w": float(w)} for rid, w in weights.items()]
    if not params:
        return 0
    # Core tables, not ORM entities: an executemany UPDATE, without the ORM's bulk-by-primary-key rules.
    rankings, comparisons = cast(Table, Ranking.__table__), cast(Table, Comparison.__table__)
    conn = db.connection()
    conn.execute(
        update(rankings).where(rankings.c.id == bindparam("rid"), rankings.c.project_id == project_id)
        .values(weight=bindparam("w")),
        params,
    )
    conn.execute(
        update(comparisons).where(comparisons.c.ranking_id == bindparam("rid")).values(weight=bindparam("w")),
        params,
    )
    db.expire_all()  # ORM objects loaded earlier must not shadow the new weights
    return len(params)


def stored_weights(db: Session, project_id: int) -> dict[int, float]:
    """rankings.weight of the project's assessed rankings."""
    rows = db.execute(
        select(Ranking.id, Ranking.weight).where(
            Ranking.project_id == project_id, Ranking.source.in_(ASSESSED_SOURCES)
        )
    ).all()
    return {int(i): float(w) for i, w in rows}


def gold_prompts_for(db: Session, project_id: int, annotator_id: int, min_completions: int) -> list[int]:
    """Gold prompts of the project with enough candidates that the annotator has not been given yet."""
    n_completions = select(Completion.prompt_id, func.count().label("n")).group_by(Completion.prompt_id).subquery()
    seen = (
        select(Assignment.id)
        .where(
            Assignment.prompt_id == Prompt.id,
            Assignment.annotator_id == annotator_id,
            Assignment.status.in_(("active", "submitted", "skipped")),
        )
        .exists()
    )
    stmt = (
        select(Prompt.id)
        .join(n_completions, n_completions.c.prompt_id == Prompt.id)
        .where(Prompt.project_id == project_id, Prompt.is_gold.is_(True), n_completions.c.n >= min_completions, ~seen)
        .order_by(Prompt.id)
    )
    return [int(p) for p in db.scalars(stmt)]


def finished_task_count(db: Session, project_id: int, annotator_id: int) -> int:
    """How many tasks the annotator has finished (submitted or skipped) in the project: the position of
    their next task in the gold injection schedule."""
    return int(
        db.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(
                Assignment.project_id == project_id,
                Assignment.annotator_id == annotator_id,
                Assignment.status.in_(("submitted", "skipped")),
            )
        )
        or 0
    )


# --- reward-model scores and active-selection priorities (app.quality.scoring) ----------------------


def active_reward_version(db: Session, project_id: int) -> ModelVersion | None:
    """The project's active reward-model version, or None."""
    return db.scalar(select(ModelVersion).where(ModelVersion.project_id == project_id,
                                                ModelVersion.kind == VersionKind.REWARD,
                                                ModelVersion.status == VersionStatus.ACTIVE))


def prompts_to_score(db: Session, project_id: int, prompt_ids: Sequence[int] | None = None) -> list[Prompt]:
    """Regular (non-gold) prompts of the project, by id: the given ones, else those with a slot not yet done."""
    stmt = select(Prompt).where(Prompt.project_id == project_id, Prompt.is_gold.is_(False))
    if prompt_ids is not None:
        # Batched (app.batches): a list of ids is one bind parameter each, and a project may hold 120,000.
        return [p for batch in batched(sorted(set(prompt_ids)))
                for p in db.scalars(stmt.where(Prompt.id.in_(batch)).order_by(Prompt.id))]
    pending = select(Slot.prompt_id).where(Slot.project_id == project_id, Slot.status != "done").distinct()
    return list(db.scalars(stmt.where(Prompt.id.in_(pending)).order_by(Prompt.id)))


def completion_texts(db: Session, prompt_ids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
    """(completion id, text) of each given prompt's completions, by completion id (prompts without any left out)."""
    out: dict[int, list[tuple[int, str]]] = {}
    for batch in batched(list(prompt_ids)):
        rows = db.execute(select(Completion.id, Completion.prompt_id, Completion.text)
                          .where(Completion.prompt_id.in_(batch)).order_by(Completion.id))
        for cid, pid, text in rows:
            out.setdefault(int(pid), []).append((int(cid), text))
    return out


def project_completions(db: Session, project_id: int, completion_ids: Iterable[int]) -> list[Completion]:
    """The given completions that belong to prompts of the project."""
    return [c for batch in batched(sorted({int(c) for c in completion_ids})) for c in db.scalars(
        select(Completion).join(Prompt, Prompt.id == Completion.prompt_id)
        .where(Prompt.project_id == project_id, Completion.id.in_(batch))
    )]


def completion_metas(db: Session, completion_ids: Sequence[int]) -> dict[int, Any]:
    """completions.meta by completion id."""
    return dict(db.execute(select(Completion.id, Completion.meta).where(Completion.id.in_(list(completion_ids)))).all())


def set_prompt_priorities(db: Session, project_id: int, priorities: Mapping[int, float]) -> None:
    """Write prompts.priority of the project's given prompts (prompt id -> priority)."""
    for pid, score in priorities.items():
        db.execute(update(Prompt).where(Prompt.id == pid, Prompt.project_id == project_id).values(priority=score))


# --- gold items (app.quality.gold_admin) ------------------------------------------------------------


def _free_slot(now: datetime) -> ColumnElement[bool]:
    return or_(Slot.status == "open", and_(Slot.status == "leased", Slot.lease_expires_at < now))


def delete_free_slots(db: Session, prompt_id: int, now: datetime) -> None:
    """Delete the prompt's free slots (open, or leased with the lease expired at `now`)."""
    db.execute(delete(Slot).where(Slot.prompt_id == prompt_id, _free_slot(now)))


def gold_prompts(db: Session, project_id: int) -> list[Prompt]:
    """The project's gold prompts, by id."""
    return list(db.scalars(select(Prompt).where(Prompt.project_id == project_id, Prompt.is_gold.is_(True))
                           .order_by(Prompt.id)))


def gold_sources(db: Session, project_id: int, need: int) -> list[Prompt]:
    """Regular prompts of the project with at least `need` completions (what gold items are built from), by id."""
    n = select(Completion.prompt_id, func.count().label("n")).group_by(Completion.prompt_id).subquery()
    stmt = (select(Prompt).join(n, n.c.prompt_id == Prompt.id)
            .where(Prompt.project_id == project_id, Prompt.is_gold.is_(False), n.c.n >= need)
            .order_by(Prompt.id))
    return list(db.scalars(stmt))


def generated_gold_ids(db: Session, project_id: int) -> set[str]:
    """External ids of the project's generated gold items (those starting "gold-")."""
    return set(db.scalars(select(Prompt.external_id).where(Prompt.project_id == project_id,
                                                          Prompt.external_id.like("gold-%"))))


# --- AI annotators (app.quality.ai_annotator) ---------------------------------------------------------


def user_by_email(db: Session, email: str) -> User | None:
    return db.scalar(select(User).where(User.email == email))
