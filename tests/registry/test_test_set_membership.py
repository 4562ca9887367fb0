"""The fixed reward-model test set (app.registry.service.extend_test_set) on SQLite and Postgres: chosen once
by hash, append-only and versioned, leaves trained prompts and AI rankings out, fixes the rankings of each
version; round planning never picks its prompts, and prompts people disagree on come back first."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.loop import service as loop
from app.models import (
    Comparison,
    Completion,
    ModelVersion,
    ModelVersionComparison,
    Project,
    Prompt,
    Ranking,
    Slot,
    TestSetPrompt,
)
from app.registry import datasets
from app.registry import service as registry
from tests.factories import make_project, make_prompt


def _rank(db: Session, project: Project, prompt: Prompt, order: list[int], *, annotator: int | None = None,
          source: str = "human") -> list[int]:
    """A ranking of `order` (completion ids, best first, strict) and its comparisons; returns their ids."""
    ranking = Ranking(project_id=project.id, prompt_id=prompt.id, shown_order=order, source=source,
                      ranks={str(c): r for r, c in enumerate(order, start=1)}, annotator_id=annotator,
                      client_info={"ranker": "chat"} if source == "ai" else {})
    db.add(ranking)
    db.flush()
    ids = []
    for i, winner in enumerate(order):
        for loser in order[i + 1:]:
            row = Comparison(project_id=project.id, prompt_id=prompt.id, ranking_id=ranking.id, winner_id=winner,
                             loser_id=loser, is_tie=False, annotator_id=annotator)
            db.add(row)
            db.flush()
            ids.append(row.id)
    return ids


def _completions(db: Session, prompt: Prompt) -> list[int]:
    return list(db.scalars(select(Completion.id).where(Completion.prompt_id == prompt.id).order_by(Completion.id)))


def _max_comparison(db: Session, project: Project) -> int:
    return int(db.scalar(select(func.max(Comparison.id)).where(Comparison.project_id == project.id)) or 0)


def _project(db: Session, fraction: float = 0.25) -> Project:
    return make_project(db, k_min=2, k_max=4, settings={"training": {"rm_heldout_fraction": fraction}})


def test_membership_is_chosen_once_by_hash_and_only_appended(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = _project(db)
    prompts = [make_prompt(db, project, n_completions=3) for _ in range(12)]
    assert registry.test_set(db, project.id).version == 0
    for p in prompts[:8]:
        _rank(db, project, p, _completions(db, p))
    first = registry.extend_test_set(db, project, _max_comparison(db, project))
    assert first.version == 1 and first.watermark == _max_comparison(db, project)
    ranked = {p.id for p in prompts[:8]}
    assert first.prompt_ids <= ranked and len(first.prompt_ids) >= 2  # at least a quarter of 8
    by_hash = {p for p in ranked if datasets.prompt_bucket(p) < 0.25}
    assert by_hash <= first.prompt_ids  # every prompt the hash picks, the lowest buckets to fill the share
    # The same data asks again (a retried job): nothing changes, no version is cut.
    assert registry.extend_test_set(db, project, _max_comparison(db, project)) == first
    assert registry.test_set(db, project.id) == first

    # A model trains on the other ranked prompts: they never join later, whatever the fraction says.
    version = ModelVersion(project_id=project.id, kind="reward", name="reward-v1", base_model="b", status="active")
    db.add(version)
    db.flush()
    trained = db.scalars(select(Comparison.id).where(Comparison.prompt_id.in_(ranked - first.prompt_ids))).all()
    db.add_all([ModelVersionComparison(model_version_id=version.id, comparison_id=c) for c in trained])
    projects_settings = dict(project.settings)
    projects_settings["training"] = {"rm_heldout_fraction": 0.9}
    project.settings = projects_settings
    db.flush()
    for p in prompts[8:]:
        _rank(db, project, p, _completions(db, p))
    second = registry.extend_test_set(db, project, _max_comparison(db, project))
    assert second.version == 2 and first.prompt_ids < second.prompt_ids  # appended, nothing removed
    assert second.prompt_ids - first.prompt_ids <= {p.id for p in prompts[8:]}  # only never-trained prompts
    assert len(second.prompt_ids) <= 11  # one ranked prompt always stays out to train on
    # Older versions read the same as before; a row per prompt, with the version it joined in.
    assert registry.test_set(db, project.id, 1) == first
    rows = dict(db.execute(select(TestSetPrompt.prompt_id, TestSetPrompt.version)
                           .where(TestSetPrompt.project_id == project.id)).all())
    assert {p for p, v in rows.items() if v == 1} == first.prompt_ids
    assert [h["version"] for h in registry.test_set_history(db, project.id)] == [1, 2]


def test_a_version_fixes_its_rankings_and_ai_rankings_never_count(db: Session) -> None:
    project = _project(db, fraction=0.5)
    prompts = [make_prompt(db, project, n_completions=3) for _ in range(4)]
    for p in prompts:
        _rank(db, project, p, _completions(db, p), annotator=None)
    first = registry.extend_test_set(db, project, _max_comparison(db, project))
    member = db.get(Prompt, min(first.prompt_ids))
    assert member is not None
    groups = registry.test_set_groups(db, project.id, first)
    assert {g["prompt_id"] for g in groups} == {str(p) for p in first.prompt_ids} and len(groups) == len(first.prompt_ids)

    # An AI ranking of a member changes nothing; a second person's ranking cuts a new version with it.
    _rank(db, project, member, _completions(db, member)[::-1], source="ai")
    assert registry.extend_test_set(db, project, _max_comparison(db, project)) == first
    _rank(db, project, member, _completions(db, member)[::-1])
    second = registry.extend_test_set(db, project, _max_comparison(db, project))
    assert second.version == 2 and second.prompt_ids == first.prompt_ids
    assert len(registry.test_set_groups(db, project.id, second)) == len(groups) + 1
    assert len(registry.test_set_groups(db, project.id, registry.test_set(db, project.id, 1))) == len(groups)

    # The training data leaves every member out, and its lineage holds only what it kept.
    snapshot = datasets.load_snapshot(db, project.id, _max_comparison(db, project))
    train, held = datasets.split_snapshot(snapshot, set(second.prompt_ids))
    assert {g["prompt_id"] for g in train.groups}.isdisjoint({str(p) for p in second.prompt_ids})
    kept = set(db.scalars(select(Comparison.id).where(Comparison.prompt_id.not_in(second.prompt_ids))))
    assert set(train.comparison_ids) == kept and held and train.snapshot_hash == snapshot.snapshot_hash


def test_no_fraction_no_test_set(db: Session) -> None:
    project = _project(db, fraction=0.0)
    for p in [make_prompt(db, project, n_completions=2) for _ in range(3)]:
        _rank(db, project, p, _completions(db, p))
    assert registry.extend_test_set(db, project, _max_comparison(db, project)).version == 0


def test_round_planning_never_picks_test_set_prompts(db: Session) -> None:
    project = _project(db, fraction=0.5)
    prompts = [make_prompt(db, project, n_completions=3) for _ in range(6)]
    for p in prompts:
        _rank(db, project, p, _completions(db, p))
    test = registry.extend_test_set(db, project, _max_comparison(db, project))
    assert 0 < len(test.prompt_ids) < 6
    plan = loop.plan_round(db, project, limit=10)
    assert {p.prompt_id for p in plan} == {p.id for p in prompts} - test.prompt_ids
    assert loop.count_eligible(db, project) == 6 - len(test.prompt_ids)
    db.execute(update(Slot).values(status="done"))
    # A request by hand that names its prompts may take one (its new rankings join a later version).
    member = min(test.prompt_ids)
    assert [p.prompt_id for p in loop.plan_round(db, project, prompt_ids=[member])] == [member]


def test_prompts_people_disagree_on_come_back_before_the_least_recent(db: Session) -> None:
    project = make_project(db, k_min=2, k_max=4, settings={
        "training": {"rm_heldout_fraction": 0.0},
        "schedule": {"uncertain_share": 0.0, "disagreement_share": 0.5}})
    from tests.factories import make_user

    alice, bob = make_user(db), make_user(db)
    prompts = [make_prompt(db, project, n_completions=3) for _ in range(4)]
    calm, split, half = prompts[1], prompts[2], prompts[3]
    for p in prompts:
        _rank(db, project, p, _completions(db, p), annotator=alice.id)
    _rank(db, project, calm, _completions(db, calm), annotator=bob.id)  # agrees on every pair
    _rank(db, project, split, _completions(db, split)[::-1], annotator=bob.id)  # disagrees on every pair
    a, b, c = _completions(db, half)
    _rank(db, project, half, [b, a, c], annotator=bob.id)  # disagrees on one pair of three
    rankings = [(alice.id, {str(a): 1, str(b): 2}), (bob.id, {str(a): 2, str(b): 1})]
    assert loop.disagreement(rankings) == 1.0 and loop.disagreement(rankings[:1]) is None
    assert loop.disagreement([(alice.id, {str(a): 1, str(b): 2}), (alice.id, {str(a): 2, str(b): 1})]) is None

    plan = loop.plan_round(db, project, limit=3)
    assert [(p.prompt_id, p.reason) for p in plan] == [
        (split.id, "disputed"), (half.id, "disputed"),  # at most half of 3 rounded up, most disputed first
        (prompts[0].id, "least_recent"),
    ]
