"""Claims and leases: locking the annotator, leasing a free slot, reading and closing assignments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, inspect, or_, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.util import ClauseAdapter

from app.models import Assignment, Completion, Project, Prompt, Slot, User

LIVE_STATUSES = ("active", "submitted", "skipped")


def lock_annotator(db: Session, annotator_id: int) -> None:
    """Serialise one annotator's claims on Postgres (two tabs asking at once); SQLite is serialised anyway."""
    db.execute(select(User.id).where(User.id == annotator_id).with_for_update())


def project_locking_annotator(db: Session, project_id: int, annotator_id: int) -> Project | None:
    """The project, read in the same statement that takes `lock_annotator`'s lock (one round trip, not two).

    FOR UPDATE OF users locks the annotator's row only; the project row is read, not locked. No row (and
    no lock) when the project does not exist.
    """
    return db.scalar(
        select(Project)
        .join(User, User.id == annotator_id)
        .where(Project.id == project_id)
        .with_for_update(of=User)
    )


def live_after_expiring(db: Session, project_id: int, annotator_id: int, now: datetime) -> Assignment | None:
    """The annotator's newest unexpired active assignment in the project (reload-safe next task), after
    marking those whose lease ran out as expired (their slots are free already).

    One UPDATE ... RETURNING does both: it visits the annotator's active assignments, sets the stale ones to
    'expired' and leaves the live one's status as it is. Run it after the annotator lock, so it sees the
    task another tab of the same annotator has just claimed.
    """
    rows = db.scalars(
        update(Assignment)
        .where(
            Assignment.project_id == project_id,
            Assignment.annotator_id == annotator_id,
            Assignment.status == "active",
        )
        .values(status=case((Assignment.lease_expires_at < now, "expired"), else_=Assignment.status))
        .returning(Assignment)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).all()
    live = [row for row in rows if row.status == "active"]
    return max(live, key=lambda row: row.id) if live else None


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

    Open slots first, then slots whose lease ran out. Each is one statement: UPDATE slots ... WHERE id =
    (SELECT ... ORDER BY ... LIMIT 1 FOR UPDATE SKIP LOCKED), re-checking freedom in the outer WHERE. The
    candidate search walks the (project, status, priority) index in order and stops at the first slot that
    passes, so its cost follows the slots this annotator must pass over (their own prompts in progress),
    not the size of the pool. On SQLite the FOR UPDATE is dropped and BEGIN IMMEDIATE serialises claims.
    """
    for free in (lambda s: s.status == "open", lambda s: and_(s.status == "leased", s.lease_expires_at < now)):
        claimed = _claim(db, project_id, annotator_id, order_by, free, expires)
        if claimed is not None:
            return claimed
    return None


def _claim(
    db: Session,
    project_id: int,
    annotator_id: int,
    order_by: Sequence[ColumnElement[Any]],
    free: Any,
    expires: datetime,
) -> tuple[int, int, int] | None:
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
        .where(candidate.project_id == project_id, free(candidate), ~seen)
        .order_by(*adapted)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(Slot)
        .where(Slot.id == pick, free(Slot))
        .values(status="leased", annotator_id=annotator_id, lease_expires_at=expires)
        .returning(Slot.id, Slot.prompt_id, Slot.round)
    )
    row = db.execute(stmt).first()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def _adapt(term: ColumnElement[Any], alias: Any) -> ColumnElement[Any]:
    return ClauseAdapter(inspect(alias).selectable).traverse(term)


def prompt_with_completions(
    db: Session, prompt_id: int, *, round_: int | None = None, ids: Sequence[int] | None = None
) -> tuple[Prompt | None, list[Completion]]:
    """The prompt and its completions (of one round, or with the given ids), in id order, in one statement.

    The prompt's columns repeat on every row; for a task's few completions that costs less than a second
    round trip.
    """
    joined = Completion.prompt_id == Prompt.id
    if round_ is not None:
        joined = and_(joined, Completion.round == round_)
    if ids is not None:
        joined = and_(joined, Completion.id.in_(list(ids)))
    rows = db.execute(
        select(Prompt, Completion).outerjoin(Completion, joined).where(Prompt.id == prompt_id).order_by(Completion.id)
    ).all()
    if not rows:
        return None, []
    return rows[0][0], [completion for _, completion in rows if completion is not None]


def add(db: Session, row: Any) -> None:
    db.add(row)
    db.flush()


def assignment(db: Session, assignment_id: int, *, for_update: bool = False) -> Assignment | None:
    stmt = select(Assignment).where(Assignment.id == assignment_id)
    if for_update:
        # populate_existing: after waiting for the lock, read what a concurrent submit wrote.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return db.scalar(stmt)


def own_assignment_with_project(
    db: Session, assignment_id: int, annotator_id: int
) -> tuple[Assignment, Project] | None:
    """The annotator's assignment, locked (FOR UPDATE OF assignments), and its project, in one statement.
    None for anyone else's: their row is neither returned nor locked."""
    row = db.execute(
        select(Assignment, Project)
        .join(Project, Project.id == Assignment.project_id)
        .where(Assignment.id == assignment_id, Assignment.annotator_id == annotator_id)
        .with_for_update(of=Assignment)
        # populate_existing: after waiting for the lock, read what a concurrent submit wrote.
        .execution_options(populate_existing=True)
    ).first()
    return (row[0], row[1]) if row is not None else None


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

