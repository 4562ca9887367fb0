"""Gold items through the real claim: generation, marking with letters, injection at the project's rate,
gold accuracy and flagging, pausing, and gold prompts staying out of the slot accounting."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.labeling import service as labeling
from app.models import Assignment, Completion, Prompt, Slot
from app.quality import gold_admin, service
from app.quality.picker import LabelingPaused
from tests.factories import make_user
from tests.quality.db_helpers import by_id, by_id_reversed, rank_next, seeded_project


def test_generated_gold_is_injected_at_the_rate_and_scored(db: Session) -> None:
    project = seeded_project(db, prompts=30, k=3, n=1, quality={"gold_rate": 0.25})
    made = gold_admin.generate_gold(db, project, 6, seed=1)
    db.commit()
    assert len(made) == 6
    for g in made:
        comps = db.scalars(select(Completion).where(Completion.prompt_id == g.id)).all()
        degraded = [c for c in comps if "gold_degraded" in c.meta]
        assert len(comps) == 4 and len(degraded) == 1  # the 3 originals (k_max allows all) + 1
        assert g.gold_spec == {"constraints": [{"better": c.id, "worse": degraded[0].id}
                                               for c in sorted(comps, key=lambda c: c.id) if c is not degraded[0]]}
        assert db.scalar(select(func.count()).select_from(Slot).where(Slot.prompt_id == g.id)) == 0
    # Generating again takes sources not used yet: no item is made twice.
    again = gold_admin.generate_gold(db, project, 2, seed=1)
    assert len(again) == 2 and not {g.external_id for g in again} & {g.external_id for g in made}
    db.commit()
    made = [*made, *again]

    annotator = make_user(db)
    db.commit()
    results = [rank_next(db, project, annotator, by_id) for _ in range(16)]
    gold = [r for r in results if r and r["is_gold"]]
    # One gold task in each block of 1 / 0.25 = 4 tasks: exactly 4 after 16.
    assert len(gold) == 4
    assert {r["prompt_id"] for r in gold} <= {g.id for g in made}
    # Degraded completions were created last (highest id), so ranking by id satisfies every constraint.
    row = next(a for a in service.get_quality(db, project, fresh=True).to_dict()["annotators"] if a["id"] == annotator.id)
    assert row["gold_accuracy"] == 1.0 and row["gold_items"] == 4 and not row["gold_flagged"]
    # Gold rankings fill no slot: 12 regular rankings, 12 slots done.
    assert db.scalar(select(func.count()).select_from(Slot).where(Slot.status == "done")) == 12


def test_flagged_annotator_is_paused_when_pausing_is_on(db: Session) -> None:
    project = seeded_project(db, prompts=20, k=3, n=1,
                             quality={"gold_rate": 0.5, "gold_threshold": 0.7, "pause_below_threshold": True})
    gold_admin.generate_gold(db, project, 8, kinds=["truncate"], seed=2)
    careless = make_user(db)
    db.commit()
    for _ in range(10):  # 5 gold items, all failed (degraded ranked first)
        assert rank_next(db, project, careless, by_id_reversed) is not None
    with pytest.raises(LabelingPaused) as err:
        labeling.next_task(db, project, careless)
    assert err.value.status == 403 and "paused" in str(err.value)
    db.rollback()
    row = next(a for a in service.get_quality(db, project, fresh=True).annotator_rows() if a["id"] == careless.id)
    assert row["gold_flagged"] and row["paused"] and row["gold_accuracy"] == 0.0


def test_mark_gold_with_letters_and_unmark(db: Session) -> None:
    project = seeded_project(db, prompts=2, k=4, n=2)
    prompt = db.scalars(select(Prompt).where(Prompt.project_id == project.id).order_by(Prompt.id)).first()
    assert prompt is not None
    ids = [c.id for c in db.scalars(select(Completion).where(Completion.prompt_id == prompt.id)
                                    .order_by(Completion.position, Completion.id))]
    gold_admin.mark_gold(db, prompt, [{"better": "A", "worse": "C"}, {"last": "D"}])
    db.commit()
    assert prompt.is_gold and prompt.gold_spec == {"constraints": [{"better": ids[0], "worse": ids[2]},
                                                                   {"last": ids[3]}]}
    assert db.scalar(select(func.count()).select_from(Slot).where(Slot.prompt_id == prompt.id)) == 0
    with pytest.raises(gold_admin.GoldError, match="not a completion"):
        gold_admin.mark_gold(db, prompt, [{"better": "A", "worse": "Z"}])
    with pytest.raises(gold_admin.GoldError, match="constraint 0"):
        gold_admin.mark_gold(db, prompt, [{"best": "A"}])
    gold_admin.unmark_gold(db, project, prompt)
    db.commit()
    assert not prompt.is_gold
    assert db.scalar(select(func.count()).select_from(Slot).where(Slot.prompt_id == prompt.id)) == 2


def test_gold_rate_zero_never_injects(db: Session) -> None:
    project = seeded_project(db, prompts=4, k=3, n=1)
    gold_admin.generate_gold(db, project, 2)
    user = make_user(db)
    db.commit()
    for _ in range(4):
        assert not rank_next(db, project, user, by_id)["is_gold"]  # type: ignore[index]
    assert db.scalar(select(func.count()).select_from(Assignment).where(Assignment.is_gold.is_(True))) == 0
