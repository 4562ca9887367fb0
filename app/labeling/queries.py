"""Every database read and write of the labeling feature (claims, leases, rankings, progress counts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, insert, inspect, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.util import ClauseAdapter

from app.models import Assignment, Comparison, Completion, Prompt, Ranking, Slot, User

LIVE_STATUSES = ("active", "submitted", "skipped")


def lock_annotator(db: Session, annotator_id: int) -> None:
    """Serialise one annotator's claims on Postgres (two tabs asking at once); SQLite is serialised anyway."""
    db.execute(select(User.id).where(User.id == annotator_id).with_for_update())


def live_assignment(db: Session, project_id: int, annotator_id: int, now: datetime) -> Assignment | None:
    """The annotator's unexpired active assignment in the project, if any (reload-safe next task)."""
    return db.scalar(
        select(Assignment)
        .where(
            Assignment.project_id == project_id,
            Assignment.annotator_id == annotator_id,
            Assignment.status == "active",
            Assignment.lease_expires_at >= now,
        )
        .order_by(Assignment.id.desc())
        .limit(1)
    )


def expire_stale(db: Session, project_id: int, annotator_id: int, now: datetime) -> None:
    """Mark this annotator's active assignments whose lease ran out as expired (their slots are free already)."""
    db.execute(
        update(Assignment)
        .where(
            Assignment.project_id == project_id,
            Assignment.annotator_id == annotator_id,
            Assignment.status == "active",
            Assignment.lease_expires_at < now,
        )
        .values(status="expired")
    )


def _free(slot: Any, now: datetime) -> ColumnElement[bool]:
    return or_(slot.status == "open", and_(slot.status == "leased", slot.lease_expires_at < now))


def claim_slot(
    db: Session,
    project_id: int,
    annotator_id: int,
    order_by: Sequence[ColumnElement[Any]],
    now: datetime,
    expires: datetime,
) -> tuple[int, int, int] | None:
    """Lease one free slot of a prompt round this annotator has not ranked, skipped or been given;
    (slot, prompt, round). A new sampling round of a prompt is a new task, even for its earlier annotators.

    One statement: UPDATE slots ... WHERE id = (SELECT ... ORDER BY ... LIMIT 1 FOR UPDATE SKIP LOCKED),
    re-checking freedom in the outer WHERE. On SQLite the FOR UPDATE is dropped and BEGIN IMMEDIATE
    serialises claims instead.
    """
    candidate = aliased(Slot)
    seen = (
        select(Assignment.id)
        .where(
            Assignment.prompt_id == candidate.prompt_id,
            Assignment.round == candidate.round,
            Assignment.annotator_id == annotator_id,
            Assignment.status.in_(LIVE_STATUSES),
        )
        .exists()
    )
    # Order terms are written against Slot; rebind them to the candidate alias.
    adapted = [_adapt(term, candidate) for term in order_by]
    pick = (
        select(candidate.id)
        .where(candidate.project_id == project_id, _free(candidate, now), ~seen)
        .order_by(*adapted)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(Slot)
        .where(Slot.id == pick, _free(Slot, now))
        .values(status="leased", annotator_id=annotator_id, lease_expires_at=expires)
        .returning(Slot.id, Slot.prompt_id, Slot.round)
    )
    row = db.execute(stmt).first()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def _adapt(term: ColumnElement[Any], alias: Any) -> ColumnElement[Any]:
    return ClauseAdapter(inspect(alias).selectable).traverse(term)


def completion_ids(db: Session, prompt_id: int, round_: int | None = None) -> list[int]:
    """The prompt's completions (of one sampling round when `round_` is given)."""
    stmt = select(Completion.id).where(Completion.prompt_id == prompt_id)
    if round_ is not None:
        stmt = stmt.where(Completion.round == round_)
    return list(db.scalars(stmt.order_by(Completion.id)))


def add(db: Session, row: Any) -> None:
    db.add(row)
    db.flush()


def assignment(db: Session, assignment_id: int, *, for_update: bool = False) -> Assignment | None:
    stmt = select(Assignment).where(Assignment.id == assignment_id)
    if for_update:
        # populate_existing: after waiting for the lock, read what a concurrent submit wrote.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return db.scalar(stmt)


def other_live_on_prompt(db: Session, assignment: Assignment) -> bool:
    """Whether the annotator holds another live assignment on the same prompt round (blocks a late re-take)."""
    return (
        db.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(
                Assignment.prompt_id == assignment.prompt_id,
                Assignment.round == assignment.round,
                Assignment.annotator_id == assignment.annotator_id,
                Assignment.status.in_(LIVE_STATUSES),
                Assignment.id != assignment.id,
            )
        )
        or 0
    ) > 0


def take_slot(db: Session, slot_id: int, annotator_id: int, holder_active: bool, now: datetime) -> bool:
    """Mark the slot done for this annotator if it is still theirs or free; False if someone else holds it."""
    mine = and_(Slot.status == "leased", Slot.annotator_id == annotator_id) if holder_active else false()
    result = db.execute(
        update(Slot)
        .where(Slot.id == slot_id, or_(_free(Slot, now), mine))
        .values(status="done", annotator_id=annotator_id, lease_expires_at=None)
    )
    return bool(getattr(result, "rowcount", 0))


def release_slot(db: Session, slot_id: int, annotator_id: int) -> None:
    """Return a leased slot to the pool (after a skip)."""
    db.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.status == "leased", Slot.annotator_id == annotator_id)
        .values(status="open", annotator_id=None, lease_expires_at=None)
    )


def extend_slot(db: Session, slot_id: int, annotator_id: int, expires: datetime) -> bool:
    result = db.execute(
        update(Slot)
        .where(Slot.id == slot_id, Slot.status == "leased", Slot.annotator_id == annotator_id)
        .values(lease_expires_at=expires)
    )
    return bool(getattr(result, "rowcount", 0))


def ranking_for(db: Session, assignment_id: int) -> Ranking | None:
    return db.scalar(select(Ranking).where(Ranking.assignment_id == assignment_id))


def comparison_count(db: Session, ranking_id: int) -> int:
    return int(
        db.scalar(select(func.count()).select_from(Comparison).where(Comparison.ranking_id == ranking_id))
        or 0
    )


def add_comparisons(db: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        db.execute(insert(Comparison), rows)


def prompt(db: Session, prompt_id: int) -> Prompt | None:
    return db.get(Prompt, prompt_id)


def completions(db: Session, ids: Sequence[int]) -> dict[int, Completion]:
    return {c.id: c for c in db.scalars(select(Completion).where(Completion.id.in_(list(ids))))}
