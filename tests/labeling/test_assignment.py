"""Slots, claims, leases, heartbeats and skips at the service level, on SQLite and Postgres."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.labeling import assignment as tasks
from app.labeling.errors import Conflict, NotFound
from app.labeling.slots import ensure_slots
from app.models import Assignment, Slot, utcnow
from app.projects import service as projects
from app.projects.schemas import ProjectUpdate
from tests.factories import make_project, make_prompt, make_user
from tests.labeling.helpers import seeded_project


def _slots(db: Session, project_id: int) -> int:
    return int(db.scalar(select(func.count()).select_from(Slot).where(Slot.project_id == project_id)) or 0)


def test_ensure_slots_counts_eligibility_and_is_idempotent(db: Session, dialect: str) -> None:
    assert dialect in {"sqlite", "postgresql"}
    project = make_project(db, k_min=3, k_max=5, annotations_per_prompt=2)
    ok = make_prompt(db, project, n_completions=3)
    make_prompt(db, project, n_completions=2)  # fewer than k_min and not allowed
    make_prompt(db, project, n_completions=1)
    assert ensure_slots(db, project) == 2
    assert ensure_slots(db, project) == 0
    assert ensure_slots(db, project, [ok.id]) == 0
    project.allow_fewer_than_k_min = True
    assert ensure_slots(db, project) == 2  # the two-completion prompt; one completion is never enough
    projects.update(db, project, ProjectUpdate(annotations_per_prompt=3))
    assert _slots(db, project.id) == 6
    db.commit()


def test_next_task_is_reload_safe_and_shows_k_random_completions(db: Session) -> None:
    project = seeded_project(db, prompts=2, k=7, k_max=5)
    user = make_user(db)
    first = tasks.next_task(db, project, user)
    assert first is not None
    assert len(first.shown_completion_ids) == 5 and len(set(first.shown_completion_ids)) == 5
    again = tasks.next_task(db, project, user)
    assert again is not None and again.id == first.id
    task = tasks.load_task(db, first)
    assert [c.id for c in task.completions] == first.shown_completion_ids
    assert task.letters == ["A", "B", "C", "D", "E"]
    db.commit()


def test_n_distinct_annotators_then_nothing_left(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4, annotations_per_prompt=2)
    a, b, c = make_user(db), make_user(db), make_user(db)
    ta = tasks.next_task(db, project, a)
    tb = tasks.next_task(db, project, b)
    assert ta is not None and tb is not None and ta.slot_id != tb.slot_id
    assert tasks.next_task(db, project, c) is None  # both slots leased
    tasks.skip(db, ta, "unclear prompt")
    tc = tasks.next_task(db, project, c)
    assert tc is not None and tc.slot_id == ta.slot_id
    # `a` skipped the prompt and never sees it again.
    assert tasks.next_task(db, project, a) is None
    db.commit()


def test_expired_lease_returns_slot_and_marks_old_assignment(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    a, b = make_user(db), make_user(db)
    ta = tasks.next_task(db, project, a)
    assert ta is not None and tasks.next_task(db, project, b) is None
    past = utcnow() - timedelta(minutes=1)
    db.execute(update(Slot).where(Slot.id == ta.slot_id).values(lease_expires_at=past))
    db.execute(update(Assignment).where(Assignment.id == ta.id).values(lease_expires_at=past))
    tb = tasks.next_task(db, project, b)
    assert tb is not None and tb.slot_id == ta.slot_id
    # a's heartbeat now fails and the old assignment becomes expired
    db.expire_all()
    with pytest.raises(Conflict):
        tasks.heartbeat(db, project, ta)
    assert db.get(Assignment, ta.id).status == "expired"  # type: ignore[union-attr]
    # a asks again: nothing left (the single slot is b's), stale rows stay expired
    assert tasks.next_task(db, project, a) is None
    db.commit()


def test_heartbeat_extends_both_leases(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4, lease_minutes=5)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    later = utcnow() + timedelta(minutes=4)
    expires = tasks.heartbeat(db, project, task, now=later)
    assert expires > task.created_at + timedelta(minutes=8)
    slot = db.get(Slot, task.slot_id)
    assert slot is not None and slot.lease_expires_at == expires
    db.commit()


def test_own_assignment_hides_other_annotators(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    a, b = make_user(db), make_user(db)
    task = tasks.next_task(db, project, a)
    assert task is not None
    with pytest.raises(NotFound):
        tasks.own_assignment(db, task.id, b)
    with pytest.raises(NotFound):
        tasks.own_assignment(db, 987654, a)
    db.commit()
