"""Claiming tasks and holding them: next task (reload-safe), leases, heartbeats, skips, ownership checks.

Correctness rests on rows, not on luck: a prompt round has exactly N slot rows; a claim leases one slot
with UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED); a partial unique index allows one live
assignment per (prompt, round, annotator). A task shows the completions of its slot's round only. A lease whose time has passed is free for the next claim; the old
assignment is marked 'expired' lazily (on its owner's next request or its late submit), so a claim never
waits on another annotator's rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.labeling import queries
from app.labeling.errors import CapReached, Conflict, NotFound
from app.labeling.selection import picker_for
from app.models import Assignment, Completion, Project, Prompt, User, utcnow
from app.projects.service import settings_of
from app.quality.scoring import suggestion_for

LETTERS = "ABCDEFGHIJKLMNOP"
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class Task:
    """An assignment with what the annotator sees: the prompt and the shown completions in display order."""

    assignment: Assignment
    prompt: Prompt
    completions: list[Completion]

    @property
    def letters(self) -> list[str]:
        return list(LETTERS[: len(self.completions)])


def shown_count(project: Project, available: int) -> int:
    """K for one task: all candidates up to k_max (eligibility for fewer than k_min is checked by the slots)."""
    return min(available, project.k_max)


def _new_task(
    db: Session, project: Project, annotator: User, prompt_id: int, slot_id: int | None, now: datetime,
    round_: int = 0,
) -> Task:
    # A gold item shows all of its (uploaded) candidates; a slot shows those of its round. The prompt and
    # the candidates are read once, here: the new task is returned loaded, with no second read for display.
    prompt, candidates = queries.prompt_with_completions(
        db, prompt_id, round_=None if slot_id is None else round_
    )
    if prompt is None:
        raise NotFound(f"prompt {prompt_id} is gone")
    by_id = {c.id: c for c in candidates}
    # Which K are shown, and their order, are random per assignment and stored: position bias is measurable.
    shown = random.sample(list(by_id), shown_count(project, len(by_id)))
    row = Assignment(
        project_id=project.id,
        prompt_id=prompt_id,
        slot_id=slot_id,
        round=round_,
        annotator_id=annotator.id,
        status="active",
        shown_completion_ids=shown,
        is_gold=slot_id is None,
        # The optional reward-model hint (quality.show_rm_suggestion); never on gold items.
        suggestion=None if slot_id is None else suggestion_for(db, project, shown),
        created_at=now,
        lease_expires_at=now + timedelta(minutes=project.lease_minutes),
    )
    queries.add(db, row)
    return Task(row, prompt, [by_id[i] for i in shown])


def next_task(
    db: Session, project: Project, annotator: User, now: datetime | None = None
) -> Assignment | None:
    """The annotator's live assignment in `project`, or a newly claimed one; None when nothing is left."""
    found = _live_or_claimed(db, project, annotator, now or utcnow(), lock=True)
    return found.assignment if isinstance(found, Task) else found


def next_task_view(
    db: Session, project: Project, annotator: User, now: datetime | None = None, *, annotator_locked: bool = False
) -> Task | None:
    """Like `next_task`, loaded for display. `annotator_locked`: the caller has already taken the annotator
    lock (queries.project_locking_annotator reads the project and takes it in one statement)."""
    found = _live_or_claimed(db, project, annotator, now or utcnow(), lock=not annotator_locked)
    return load_task(db, found) if isinstance(found, Assignment) else found


def _live_or_claimed(
    db: Session, project: Project, annotator: User, now: datetime, *, lock: bool
) -> Assignment | Task | None:
    """The live assignment as it is (not loaded), or a newly claimed task (loaded), or None."""
    if lock:
        queries.lock_annotator(db, annotator.id)
    live = queries.live_after_expiring(db, project.id, annotator.id, now)
    if live is not None:
        return live
    _check_daily_cap(db, project, annotator, now)
    picker = picker_for(project)
    gold = picker.before_claim(db, project, annotator)
    if gold is not None:
        try:
            with db.begin_nested():
                return _new_task(db, project, annotator, gold.id, None, now)
        except IntegrityError:
            pass  # already seen this gold prompt: fall through to a normal claim
    expires = now + timedelta(minutes=project.lease_minutes)
    for _ in range(_CLAIM_ATTEMPTS):
        claimed = queries.claim_slot(db, project.id, annotator.id, picker.order_by(project), now, expires)
        if claimed is not None:
            slot_id, prompt_id, round_ = claimed
            return _new_task(db, project, annotator, prompt_id, slot_id, now, round_)
    return None


def _check_daily_cap(db: Session, project: Project, annotator: User, now: datetime) -> None:
    """Refuse a new claim once the annotator's rankings of the last 24 hours reach `labeling.daily_cap` (a
    task already held stays theirs to finish)."""
    cap = settings_of(project).labeling.daily_cap
    if cap is None:
        return
    done, oldest = queries.rankings_since(db, project.id, annotator.id, now - timedelta(hours=24))
    if done >= cap:
        opens = (oldest or now) + timedelta(hours=24)
        raise CapReached(f"you submitted {done} rankings in this project in the last 24 hours, its daily cap of "
                         f"{cap}; the next task opens at {opens:%Y-%m-%d %H:%M} UTC")


def own_assignment(
    db: Session, assignment_id: int, annotator: User, *, for_update: bool = False
) -> Assignment:
    """The annotator's own assignment; anyone else's is reported as not found (no existence leak)."""
    row = queries.assignment(db, assignment_id, for_update=for_update)
    if row is None or row.annotator_id != annotator.id:
        raise NotFound(f"assignment {assignment_id} not found")
    return row


def load_task(db: Session, assignment: Assignment) -> Task:
    """The prompt and the shown completions, in the stored display order."""
    prompt, shown = queries.prompt_with_completions(db, assignment.prompt_id, ids=assignment.shown_completion_ids)
    if prompt is None:
        raise NotFound(f"prompt of assignment {assignment.id} is gone")
    by_id = {c.id: c for c in shown}
    return Task(assignment, prompt, [by_id[i] for i in assignment.shown_completion_ids if i in by_id])


def is_live(assignment: Assignment, now: datetime | None = None) -> bool:
    return assignment.status == "active" and assignment.lease_expires_at >= (now or utcnow())


def heartbeat(db: Session, project: Project, assignment: Assignment, now: datetime | None = None) -> datetime:
    """Extend the lease by the project's lease length; Conflict when the task is finished or was taken over."""
    now = now or utcnow()
    db.refresh(assignment, with_for_update=True)
    if assignment.status != "active":
        raise Conflict(f"assignment {assignment.id} is {assignment.status}; nothing to extend")
    expires = now + timedelta(minutes=project.lease_minutes)
    if assignment.slot_id is not None and not queries.extend_slot(
        db, assignment.slot_id, assignment.annotator_id, expires
    ):
        assignment.status = "expired"
        db.flush()
        raise Conflict("the lease expired and the task went to someone else")
    assignment.lease_expires_at = expires
    assignment.heartbeat_at = now
    db.flush()
    return expires


def skip(db: Session, assignment: Assignment, reason: str, now: datetime | None = None) -> None:
    """Skip the task: the annotator will not see this prompt again and the slot returns to the pool."""
    db.refresh(assignment, with_for_update=True)
    if assignment.status == "skipped":
        return  # a retried skip is a no-op
    if assignment.status == "submitted":
        raise Conflict(f"assignment {assignment.id} was already submitted")
    if assignment.status == "expired" and queries.other_live_on_prompt(db, assignment):
        raise Conflict("you hold another task on this prompt")
    if assignment.slot_id is not None and assignment.status == "active":
        queries.release_slot(db, assignment.slot_id, assignment.annotator_id)
    assignment.status = "skipped"
    assignment.skip_reason = reason.strip()[:2000] or "no reason given"
    assignment.finished_at = now or utcnow()
    db.flush()
