"""Many annotators at once: every prompt ends at exactly N rankings by N distinct annotators, no duplicates,
and the comparisons add up. Service level, one session per unit of work, real threads."""

from __future__ import annotations

import random
import threading
from itertools import combinations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.db import make_session_factory, unit_of_work
from app.labeling import assignment as tasks
from app.labeling import submission
from app.labeling.schemas import RankingIn
from app.models import Comparison, Project, Ranking, User
from tests.factories import make_user
from tests.labeling.helpers import seeded_project


def _annotate(engine: Engine, project: Project, user: User, seed: int, errors: list[BaseException]) -> None:
    factory = make_session_factory(engine)
    rng = random.Random(seed)
    try:
        while True:
            with unit_of_work(factory) as db:
                task = tasks.next_task(db, project, user)
                if task is None:
                    return
                ids = list(task.shown_completion_ids)
                ranks = {cid: rng.randint(1, 3) for cid in ids}
                ranks[ids[0]], ranks[ids[1]] = 1, 2  # at least two distinct ranks
            with unit_of_work(factory) as db:
                submission.submit(db, project, user, task.id, RankingIn(ranks=ranks))
    except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion in the test
        errors.append(exc)


def _run(db: Session, engine: Engine, annotators: int, prompts: int, n: int) -> None:
    project = seeded_project(db, prompts=prompts, k=4, annotations_per_prompt=n)
    users = [make_user(db) for _ in range(annotators)]
    db.commit()
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_annotate, args=(engine, project, u, i, errors)) for i, u in enumerate(users)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    per_prompt = dict(
        db.execute(
            select(Ranking.prompt_id, func.count(func.distinct(Ranking.annotator_id)))
            .where(Ranking.project_id == project.id)
            .group_by(Ranking.prompt_id)
        ).all()
    )
    assert len(per_prompt) == prompts and set(per_prompt.values()) == {n}
    total = int(db.scalar(select(func.count()).select_from(Ranking)) or 0)
    assert total == prompts * n  # distinct annotators == rankings: no duplicates
    expected_pairs = 0
    expected_ties = 0
    for ranking in db.scalars(select(Ranking)):
        ranks = list(ranking.ranks.values())
        expected_pairs += len(list(combinations(ranks, 2)))
        expected_ties += sum(1 for a, b in combinations(ranks, 2) if a == b)
    rows = int(db.scalar(select(func.count()).select_from(Comparison)) or 0)
    strict = int(
        db.scalar(select(func.count()).select_from(Comparison).where(Comparison.is_tie.is_(False))) or 0
    )
    assert rows == expected_pairs and strict == expected_pairs - expected_ties


def test_twenty_annotators_n3_two_hundred_prompts(db: Session, clean_engine: Engine, dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("the full-size run is the Postgres check; SQLite has the short variant")
    _run(db, clean_engine, annotators=20, prompts=200, n=3)


def test_short_run(db: Session, clean_engine: Engine) -> None:
    _run(db, clean_engine, annotators=4, prompts=15, n=2)
