"""Changing a submitted ranking within the edit window: a new version (the old one kept as superseded),
comparisons regenerated, exports on the current version only, idempotent retries, and the refusals: after
the window, after training (lineage or a training watermark), not the last ranking, window 0."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.exports.schemas import ExportOptions
from app.exports.service import export_to_sink
from app.jobs import queue
from app.labeling import assignment as tasks
from app.labeling import revision, submission
from app.labeling.errors import Conflict
from app.labeling.schemas import RankingIn
from app.models import (
    Assignment,
    Comparison,
    ModelVersion,
    ModelVersionComparison,
    Project,
    Ranking,
    RankingVersion,
    User,
    utcnow,
)
from tests.factories import api_token, csrf_from, login, make_user
from tests.labeling.helpers import seeded_project, strict_ranking


def _submitted(db: Session, project: Project, user: User) -> tuple[Assignment, list[int]]:
    task = tasks.next_task(db, project, user)
    assert task is not None
    submission.submit(db, project, user, task.id, strict_ranking(task, rationale="first"))
    db.commit()
    return task, list(task.shown_completion_ids)


def _pairs(engine: Engine, project: Project, margin: bool = False) -> list[dict[str, object]]:
    sink = io.BytesIO()
    export_to_sink(engine, project.id, "pairs", "jsonl", sink, options=ExportOptions(margin_column=margin))
    return [json.loads(line) for line in sink.getvalue().decode().splitlines()]


def test_revise_keeps_the_old_version_and_regenerates_comparisons(
    db: Session, clean_engine: Engine, dialect: str
) -> None:
    project = seeded_project(db, prompts=2, k=3)
    user = make_user(db)
    task, (a, b, c) = _submitted(db, project, user)
    ranking = db.scalar(select(Ranking).where(Ranking.assignment_id == task.id))
    assert ranking is not None and ranking.version == 1
    old_ids = set(db.scalars(select(Comparison.id).where(Comparison.ranking_id == ranking.id)))
    changed = RankingIn(ranks={a: 3, b: 1, c: 2}, rationale="second thoughts")
    result = revision.revise(db, project, user, task.id, changed)
    db.commit()
    assert result["version"] == 2 and result["ranking_id"] == ranking.id and result["comparisons"] == 3
    db.refresh(ranking)
    assert ranking.ranks == {str(a): 3, str(b): 1, str(c): 2} and ranking.rationale == "second thoughts"
    assert ranking.version == 2 and ranking.revised_at is not None
    (old,) = db.scalars(select(RankingVersion).where(RankingVersion.ranking_id == ranking.id))
    assert old.version == 1 and old.ranks == {str(a): 1, str(b): 2, str(c): 3} and old.rationale == "first"
    assert old.superseded_at == ranking.revised_at
    pairs = list(db.scalars(select(Comparison).where(Comparison.ranking_id == ranking.id)))
    assert len(pairs) == 3 and {(p.winner_id, p.loser_id) for p in pairs} == {(b, a), (c, a), (b, c)}
    assert {(p.winner_rank, p.loser_rank) for p in pairs} == {(1, 3), (2, 3), (1, 2)}
    if dialect == "postgresql":  # SQLite may hand the deleted ids out again
        assert not old_ids & {p.id for p in pairs}
    exported = _pairs(clean_engine, project)
    assert {(r["chosen_completion_id"], r["rejected_completion_id"]) for r in exported} == {(b, a), (c, a), (b, c)}
    # The same change posted again (a retry) is no new version; the first submit's retry still replays.
    again = revision.revise(db, project, user, task.id, changed)
    assert again == result
    replay = submission.submit(db, project, user, task.id, strict_ranking(task, rationale="first"))
    assert replay["ranking_id"] == ranking.id
    db.commit()
    assert len(list(db.scalars(select(RankingVersion)))) == 1


def test_refused_after_the_window(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3, settings={"labeling": {"edit_window_minutes": 5}})
    user = make_user(db)
    task, (a, b, c) = _submitted(db, project, user)
    assert revision.editable_last(db, project, user) is not None
    later = utcnow() + timedelta(minutes=6)
    assert revision.editable_last(db, project, user, now=later) is None
    with pytest.raises(Conflict, match="5-minute window") as refused:
        revision.revise(db, project, user, task.id, RankingIn(ranks={a: 2, b: 1, c: 3}), now=later)
    assert refused.value.echo and refused.value.echo["ranks"]  # what was typed comes back
    db.rollback()
    ranking = db.scalar(select(Ranking))
    assert ranking is not None and ranking.version == 1


def test_refused_once_it_trained_a_model(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    user = make_user(db)
    task, (a, b, c) = _submitted(db, project, user)
    first = db.scalar(select(Comparison.id).order_by(Comparison.id))
    assert first is not None
    version = ModelVersion(project_id=project.id, kind="reward", name="reward-v1", base_model="tiny",
                           status="candidate", data_watermark=first - 1)
    db.add(version)
    db.flush()
    db.add(ModelVersionComparison(model_version_id=version.id, comparison_id=first))
    db.commit()
    assert revision.editable_last(db, project, user) is None
    with pytest.raises(Conflict, match="train a model"):
        revision.revise(db, project, user, task.id, RankingIn(ranks={a: 2, b: 1, c: 3}))


def test_refused_at_or_below_a_training_watermark(db: Session) -> None:
    """A model version still training (no lineage yet) or a queued job that fixed its watermark counts."""
    project = seeded_project(db, prompts=1, k=3)
    user = make_user(db)
    task, (a, b, c) = _submitted(db, project, user)
    top = db.scalar(select(Comparison.id).order_by(Comparison.id.desc()))
    job, _created = queue.enqueue(db, "train_reward_model", project.id, {"watermark": top})
    db.commit()
    with pytest.raises(Conflict, match="train a model"):
        revision.revise(db, project, user, task.id, RankingIn(ranks={a: 2, b: 1, c: 3}))
    db.rollback()
    queue.cancel(db, job.id)
    db.add(ModelVersion(project_id=project.id, kind="reward", name="reward-v1", base_model="tiny",
                        status="training", data_watermark=top))
    db.commit()
    with pytest.raises(Conflict, match="train a model"):
        revision.revise(db, project, user, task.id, RankingIn(ranks={a: 2, b: 1, c: 3}))


def test_only_the_last_ranking_and_not_when_the_window_is_zero(db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3)
    user = make_user(db)
    first, (a, b, c) = _submitted(db, project, user)
    second, _ = _submitted(db, project, user)
    last = revision.editable_last(db, project, user)
    assert last is not None and last.assignment_id == second.id and 1 <= last.minutes_left <= 10
    with pytest.raises(Conflict, match="only your last"):
        revision.revise(db, project, user, first.id, RankingIn(ranks={a: 2, b: 1, c: 3}))
    db.rollback()
    closed = seeded_project(db, prompts=1, k=3, settings={"labeling": {"edit_window_minutes": 0}})
    task, (x, y, z) = _submitted(db, closed, user)
    assert revision.editable_last(db, closed, user) is None
    with pytest.raises(Conflict, match="does not allow"):
        revision.revise(db, closed, user, task.id, RankingIn(ranks={x: 2, y: 1, z: 3}))


def test_pairwise_revision_changes_strength_and_margin(db: Session, clean_engine: Engine) -> None:
    project = seeded_project(db, prompts=1, k=2, k_min=2, k_max=2, settings={"labeling": {"mode": "pairwise"}})
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    a, b = task.shown_completion_ids
    submission.submit(db, project, user, task.id, RankingIn(ranks={a: 1, b: 2}, strength=1))
    db.commit()
    assert [r["margin"] for r in _pairs(clean_engine, project, margin=True)] == [1]
    revision.revise(db, project, user, task.id, RankingIn(ranks={a: 2, b: 1}, strength=3))
    db.commit()
    rows = _pairs(clean_engine, project, margin=True)
    assert [(r["chosen_completion_id"], r["margin"]) for r in rows] == [(b, 3)]
    (old,) = db.scalars(select(RankingVersion))
    assert old.strength == 1


def test_api_put_changes_the_last_ranking_and_409_once_trained(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    headers = api_token(db, make_user(db))
    db.commit()
    task = client.get(f"/api/projects/{project.id}/tasks/next", headers=headers).json()
    ids = [c["id"] for c in task["completions"]]
    url = f"/api/assignments/{task['assignment_id']}/ranking"
    assert client.post(url, json={"ranks": {str(c): i + 1 for i, c in enumerate(ids)}}, headers=headers).status_code == 200
    changed = {"ranks": {str(ids[0]): 3, str(ids[1]): 2, str(ids[2]): 1}}
    first = client.put(url, json=changed, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 2 and first.json()["comparisons"] == 3
    again = client.put(url, json=changed, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    db.add(ModelVersion(project_id=project.id, kind="reward", name="reward-v1", base_model="tiny",
                        status="active", data_watermark=10**9))
    db.commit()
    refused = client.put(url, json={"ranks": {str(ids[0]): 1, str(ids[1]): 3, str(ids[2]): 2}}, headers=headers)
    assert refused.status_code == 409 and "train a model" in refused.json()["detail"]
    assert refused.json()["ranking"]["ranks"] == {str(ids[0]): 1, str(ids[1]): 3, str(ids[2]): 2}
    ranking = db.scalar(select(Ranking))
    assert ranking is not None and ranking.version == 2


def test_edit_page_is_the_owners_only(client: TestClient, db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3)
    owner, other = make_user(db), make_user(db)
    task, _shown = _submitted(db, project, owner)
    other_email = other.email
    url = f"/projects/{project.id}/label/{task.id}/edit"
    db.commit()
    login(client, other_email)
    assert client.get(url).status_code == 404
    token = csrf_from(client.get("/").text)
    assert client.post(url, data={"csrf_token": token}).status_code == 404
    ranking = db.scalar(select(Ranking))
    assert ranking is not None and ranking.version == 1
