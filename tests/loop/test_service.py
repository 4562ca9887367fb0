"""The loop's round plan in the database (app.loop.service), on SQLite and Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.labeling.slots import ensure_slots
from app.loop import service as loop
from app.models import Ranking, Slot
from app.projects import service as projects
from app.projects.schemas import ProjectUpdate
from app.scheduler import service as scheduler
from tests.factories import make_project, make_prompt


def test_prompts_being_labeled_wait_and_ranked_ones_come_back_in_a_new_round(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = make_project(db, k_min=2, k_max=4)
    prompts = [make_prompt(db, project, n_completions=3) for _ in range(2)]
    gold = make_prompt(db, project, n_completions=3)
    gold.is_gold = True
    assert ensure_slots(db, project) == 2
    assert loop.count_eligible(db, project) == 0  # every prompt is still being labeled
    with pytest.raises(scheduler.SchedulerError, match="no eligible prompts"):
        scheduler.run_loop_now(db, project)

    db.execute(update(Slot).values(status="done"))
    plan = loop.plan_round(db, project, limit=5)
    assert [(p.prompt_id, p.round) for p in plan] == [(prompts[0].id, 1), (prompts[1].id, 1)]  # gold never
    assert loop.count_eligible(db, project) == 2
    assert ensure_slots(db, project, [prompts[0].id], round_=1) == 0  # no round-1 candidates yet

    db.add(Ranking(project_id=project.id, prompt_id=prompts[0].id, ranks={}, shown_order=[]))
    db.flush()
    plan = loop.plan_round(db, project, limit=5)
    assert [(p.prompt_id, p.reason) for p in plan] == [(prompts[1].id, "never_ranked"), (prompts[0].id, "least_recent")]
    projects.update(db, project, ProjectUpdate(settings={"schedule": {"resample": False}}))
    assert loop.count_eligible(db, project) == 1  # only the never-ranked prompt
    assert [p.prompt_id for p in loop.plan_round(db, project, limit=5)] == [prompts[1].id]
