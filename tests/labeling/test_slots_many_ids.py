"""`ensure_slots` for the prompts of a very large import: more ids than one statement may bind."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.labeling.slots import ensure_slots
from app.models import Slot
from tests.factories import make_project, make_prompt

# Postgres binds at most 65535 parameters per statement (SQLite builds often 32766); a 100k-line import
# passed every new prompt id in one IN list and failed at the very end (found by bench/faults.py, case 8).
MANY = 70_000


def test_ensure_slots_accepts_more_ids_than_one_statement_can_bind(db: Session) -> None:
    project = make_project(db, k_min=2, k_max=4, annotations_per_prompt=2)
    prompts = [make_prompt(db, project, n_completions=2) for _ in range(3)]
    # The real prompts spread over the id list, padded with ids that match nothing (cheap to pass, and what
    # matters is the size of the list, not the number of rows).
    padding = iter(range(10**9, 10**9 + MANY))
    ids = [*[next(padding) for _ in range(MANY // 2)], prompts[0].id, prompts[1].id,
           *padding, prompts[2].id]
    assert len(ids) > 65_535
    assert ensure_slots(db, project, ids) == 6
    count = db.scalar(select(func.count()).select_from(Slot).where(Slot.project_id == project.id))
    assert count == 6
    assert ensure_slots(db, project, ids) == 0  # idempotent across chunks
    db.commit()
