"""Submissions: validation (400), comparisons, idempotency (200 replay, 422 on a different payload),
late submits after a lease expired, and five concurrent identical submits storing one ranking."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from app.db import make_session_factory, unit_of_work
from app.labeling import assignment as tasks
from app.labeling import submission
from app.labeling.errors import Conflict, Invalid, LabelingError, PayloadMismatch
from app.labeling.schemas import RankingIn
from app.models import Assignment, Comparison, Ranking, Slot, utcnow
from app.projects import service as projects
from app.projects.schemas import ProjectUpdate
from tests.factories import make_user
from tests.labeling.helpers import seeded_project, strict_ranking


def _count(db: Session, model: Any) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_submit_stores_ranking_comparisons_and_ties(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    a, b, c, d = task.shown_completion_ids
    data = RankingIn(
        ranks={a: 2, b: 1, c: 2, d: 3}, rationale="b is best", wall_seconds=12.5, active_seconds=9
    )
    result = submission.submit(db, project, user, task.id, data, {"user_agent": "pytest"})
    db.commit()
    assert result["comparisons"] == 6
    ranking = db.scalar(select(Ranking))
    assert ranking is not None and ranking.ranks == {str(a): 2, str(b): 1, str(c): 2, str(d): 3}
    assert ranking.shown_order == [a, b, c, d] and ranking.client_info == {"user_agent": "pytest"}
    pairs = {(x.winner_id, x.loser_id): x for x in db.scalars(select(Comparison))}
    assert pairs[(b, a)].rank_gap == 1 and not pairs[(b, a)].is_tie
    assert pairs[(a, c)].is_tie and pairs[(a, c)].rank_gap == 0
    assert pairs[(b, d)].winner_rank == 1 and pairs[(b, d)].loser_rank == 3
    assert db.get(Slot, task.slot_id).status == "done"  # type: ignore[union-attr]
    assert db.get(Assignment, task.id).status == "submitted"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ids: {"ranks": {ids[0]: 1, ids[1]: 2, ids[2]: 3}}, "have no rank"),
        (lambda ids: {"ranks": {**{i: n + 1 for n, i in enumerate(ids)}, 999999: 1}}, "were not shown"),
        (lambda ids: {"ranks": {i: 5 for i in ids}}, "between 1 and 4"),
        (lambda ids: {"ranks": {i: 1 for i in ids}}, "at least two different"),
        (
            lambda ids: {"ranks": {i: n + 1 for n, i in enumerate(ids)}, "flags": {ids[0]: ["nope"]}},
            "unknown flag",
        ),
        (
            lambda ids: {"ranks": {i: n + 1 for n, i in enumerate(ids)}, "likert": {ids[0]: 8}},
            "between 1 and 7",
        ),
        (lambda ids: {"ranks": {i: n + 1 for n, i in enumerate(ids)}, "demonstration": "x"}, "not enabled"),
    ],
)
def test_invalid_submissions_store_nothing(db: Session, mutate: Any, message: str) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    with pytest.raises(Invalid, match=message):
        submission.submit(db, project, user, task.id, RankingIn(**mutate(task.shown_completion_ids)))
    assert _count(db, Ranking) == 0 and _count(db, Comparison) == 0
    db.rollback()


def test_required_fields_follow_project_settings(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    projects.update(
        db,
        project,
        ProjectUpdate(
            settings={
                "labeling": {"rationale_required": True, "likert_required": True, "flags_required": True}
            }
        ),
    )
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    ids = task.shown_completion_ids
    with pytest.raises(Invalid, match="flags: required"):
        submission.submit(db, project, user, task.id, strict_ranking(task))
    full = {"flags": {i: [] for i in ids}, "likert": {i: 4 for i in ids}}
    with pytest.raises(Invalid, match="rationale: required"):
        submission.submit(db, project, user, task.id, strict_ranking(task, **full))
    result = submission.submit(db, project, user, task.id, strict_ranking(task, rationale="why", **full))
    assert result["comparisons"] == 3
    db.commit()


def test_not_rankable_needs_no_ranks_and_makes_no_comparisons(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    result = submission.submit(db, project, user, task.id, RankingIn(not_rankable=True))
    db.commit()
    assert result["not_rankable"] is True and result["comparisons"] == 0


def test_retry_replays_and_different_payload_is_422(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    first = submission.submit(db, project, user, task.id, strict_ranking(task, wall_seconds=3))
    db.commit()
    again = submission.submit(db, project, user, task.id, strict_ranking(task, wall_seconds=4))
    assert again == first
    reversed_ranks = RankingIn(ranks={cid: 4 - i for i, cid in enumerate(task.shown_completion_ids)})
    with pytest.raises(PayloadMismatch):
        submission.submit(db, project, user, task.id, reversed_ranks)
    db.commit()
    assert _count(db, Ranking) == 1
    assert db.scalar(select(Ranking.ranks)) == {str(k): v for k, v in strict_ranking(task).ranks.items()}


def _expire(db: Session, task: Assignment) -> None:
    past = utcnow() - timedelta(seconds=1)
    db.execute(update(Slot).where(Slot.id == task.slot_id).values(lease_expires_at=past))
    db.execute(update(Assignment).where(Assignment.id == task.id).values(lease_expires_at=past))
    db.expire_all()


def test_late_submit_accepted_while_slot_is_free(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    _expire(db, task)
    result = submission.submit(db, project, user, task.id, strict_ranking(task))
    db.commit()
    assert result["comparisons"] == 6 and db.get(Slot, task.slot_id).status == "done"  # type: ignore[union-attr]


def test_late_submit_after_takeover_is_409_with_echo(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4)
    a, b = make_user(db), make_user(db)
    task = tasks.next_task(db, project, a)
    assert task is not None
    _expire(db, task)
    taken = tasks.next_task(db, project, b)
    assert taken is not None and taken.slot_id == task.slot_id
    data = strict_ranking(task, rationale="my careful reasoning")
    with pytest.raises(Conflict) as caught:
        submission.submit(db, project, a, task.id, data)
    assert caught.value.echo is not None and caught.value.echo["rationale"] == "my careful reasoning"
    db.commit()
    assert _count(db, Ranking) == 0
    assert db.get(Assignment, task.id).status == "expired"  # type: ignore[union-attr]
    assert db.get(Slot, task.slot_id).annotator_id == b.id  # type: ignore[union-attr]


def test_five_concurrent_identical_submissions_store_one(db: Session, clean_engine: Engine) -> None:
    project = seeded_project(db, prompts=1, k=5)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    db.commit()
    data = strict_ranking(task, rationale="same")
    factory = make_session_factory(clean_engine)
    barrier = threading.Barrier(5)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        try:
            with unit_of_work(factory) as session:
                results.append(submission.submit(session, project, user, task.id, data))
        except (LabelingError, Exception) as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == [] and len(results) == 5
    assert all(r == results[0] for r in results)
    assert _count(db, Ranking) == 1 and _count(db, Comparison) == 10
