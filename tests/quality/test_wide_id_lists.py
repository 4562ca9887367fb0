"""Lists of ids above the drivers' bind-parameter limits (issue 16, item 5: gold generation on a project of
120,000 prompts asked for the completions of every prompt in one statement, and psycopg refuses more than
65,535 parameters). Each query that takes an unbounded id list gets 70,000 ids, a few of them real."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.batches import batched
from app.models import Completion
from app.quality import gold_admin, queries, scoring
from tests.factories import make_project, make_prompt, make_user

WIDE = 70_000  # above 65,535: one statement over every id is refused by Postgres
ABSENT = range(10**9, 10**9 + WIDE)  # ids no row has


def test_batches_cover_every_value_in_order() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []


def test_quality_queries_take_more_ids_than_bind_parameters(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = make_project(db, k_min=2, k_max=3)
    prompts = [make_prompt(db, project, n_completions=2) for _ in range(3)]
    user = make_user(db)
    db.commit()
    real = [p.id for p in prompts]
    wide = [*ABSENT, *real]

    # What gold generation asks for: the completions of every source prompt.
    by_prompt = gold_admin.completions_of(db, wide)
    assert len(by_prompt) == WIDE + 3 and [len(by_prompt[p]) for p in real] == [2, 2, 2]
    assert [c.position for c in by_prompt[real[-1]]] == [0, 1]
    assert sorted(queries.prompts(db, wide)) == real
    assert list(queries.users(db, [*ABSENT, user.id])) == [user.id]

    to_score = scoring.prompts_to_score(db, project.id, wide)
    assert [p.prompt_id for p in to_score] == real
    last = [cid for cid, _ in to_score[-1].completions]
    result = scoring.store_rm_scores(db, project, version_id=1, scores={c: 0.1 for c in ABSENT} | {c: 0.5 for c in last})
    db.commit()
    assert result.completions == 2
    assert [m["rm_score"] for m in db.scalars(select(Completion.meta).where(Completion.id.in_(last)))] == [0.5, 0.5]
