"""Pairwise mode: K = 2 with a 7-point preference scale, stored as one comparison with its strength; the
form's one `preference` field; the rules that keep strength and ranks in agreement; project settings."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.labeling import assignment as tasks
from app.labeling import submission
from app.labeling.errors import Invalid, PayloadMismatch
from app.labeling.forms import ranking_from_form
from app.labeling.schemas import RankingIn
from app.models import Comparison, Project, Ranking
from app.projects import service as projects
from app.projects.schemas import ProjectCreate, ProjectUpdate
from tests.factories import login, make_user
from tests.labeling.helpers import seeded_project

PAIRWISE = {"labeling": {"mode": "pairwise"}}


def _pairwise(db: Session, prompts: int = 1) -> Project:
    return seeded_project(db, prompts=prompts, k=2, k_min=2, k_max=2, settings=PAIRWISE)


def test_pairwise_choice_is_one_comparison_with_its_strength(db: Session) -> None:
    project = _pairwise(db, prompts=2)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None and len(task.shown_completion_ids) == 2
    a, b = task.shown_completion_ids
    # "B better" on the page: preference +2.
    data = ranking_from_form(FormData([("preference", "2")]), [a, b])
    assert data.ranks == {a: 2, b: 1} and data.strength == 2
    result = submission.submit(db, project, user, task.id, data)
    db.commit()
    assert result["comparisons"] == 1
    ranking = db.scalar(select(Ranking).where(Ranking.assignment_id == task.id))
    assert ranking is not None and ranking.strength == 2
    (pair,) = db.scalars(select(Comparison).where(Comparison.ranking_id == ranking.id))
    assert (pair.winner_id, pair.loser_id, pair.strength, pair.is_tie) == (b, a, 2, False)
    # "About the same" is a tie of strength 0 (kept, but exports and training skip ties).
    second = tasks.next_task(db, project, user)
    assert second is not None
    c, d = second.shown_completion_ids
    tie = ranking_from_form(FormData([("preference", "0")]), [c, d])
    assert tie.ranks == {c: 1, d: 1} and tie.strength == 0
    submission.submit(db, project, user, second.id, tie)
    db.commit()
    (tied,) = db.scalars(select(Comparison).where(Comparison.winner_id.in_([c, d])))
    assert tied.is_tie and tied.strength == 0


def test_first_answer_much_better_is_minus_three() -> None:
    data = ranking_from_form(FormData([("preference", "-3")]), [11, 12])
    assert data.ranks == {11: 1, 12: 2} and data.strength == 3


@pytest.mark.parametrize("value", ["4", "-4", "x", "1.5"])
def test_preference_outside_the_scale_is_invalid(value: str) -> None:
    with pytest.raises(Invalid, match="preference"):
        ranking_from_form(FormData([("preference", value)]), [11, 12])


def test_pairwise_needs_a_choice_and_an_agreeing_strength(db: Session) -> None:
    project = _pairwise(db)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    a, b = task.shown_completion_ids
    with pytest.raises(Invalid) as missing:
        submission.submit(db, project, user, task.id, RankingIn())
    assert [p.field for p in missing.value.problems] == ["preference"]
    with pytest.raises(Invalid, match="strength"):
        submission.submit(db, project, user, task.id, RankingIn(ranks={a: 1, b: 1}, strength=2))
    with pytest.raises(Invalid, match="strength"):
        submission.submit(db, project, user, task.id, RankingIn(ranks={a: 1, b: 2}, strength=0))
    with pytest.raises(ValidationError):
        RankingIn(ranks={a: 1, b: 2}, strength=4)
    assert db.scalar(select(Ranking)) is None


def test_strength_is_refused_outside_pairwise_projects(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=2)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    a, b = task.shown_completion_ids
    with pytest.raises(Invalid, match="only collected in pairwise"):
        submission.submit(db, project, user, task.id, RankingIn(ranks={a: 1, b: 2}, strength=1))


def test_same_choice_replays_and_a_different_strength_is_a_mismatch(db: Session) -> None:
    project = _pairwise(db)
    user = make_user(db)
    task = tasks.next_task(db, project, user)
    assert task is not None
    a, b = task.shown_completion_ids
    first = submission.submit(db, project, user, task.id, RankingIn(ranks={a: 1, b: 2}, strength=1))
    again = submission.submit(db, project, user, task.id, RankingIn(ranks={a: 1, b: 2}, strength=1))
    assert again == first
    with pytest.raises(PayloadMismatch, match="different ranking"):
        submission.submit(db, project, user, task.id, RankingIn(ranks={a: 1, b: 2}, strength=3))


def test_pairwise_mode_needs_k_max_two(db: Session) -> None:
    with pytest.raises(ValidationError, match="k_max must be 2"):
        ProjectCreate(name="p", k_min=2, k_max=4, settings=PAIRWISE)
    project = seeded_project(db, prompts=1, k=2)
    with pytest.raises(projects.ProjectError, match="k_max must be 2"):
        projects.update(db, project, ProjectUpdate(settings=PAIRWISE))
    db.rollback()
    assert projects.settings_of(project).labeling.edit_window_minutes == 10  # the default window


def test_pairwise_page_posts_one_preference(db: Session, client: TestClient) -> None:
    project = _pairwise(db)
    user = make_user(db)
    db.commit()
    login(client, user.email)
    page = client.get(f"/projects/{project.id}/label")
    assert page.status_code == 200
    html = page.text
    assert 'data-mode="pairwise"' in html and html.count('name="preference"') == 7
    assert 'class="rank"' not in html and "drag-handle" not in html
    assert "B much better" in html and "About the same" in html
    token = html.split('name="csrf_token" value="')[1].split('"')[0]
    aid = int(html.split('data-assignment="')[1].split('"')[0])
    response = client.post(
        f"/projects/{project.id}/label/{aid}",
        data={"csrf_token": token, "preference": "-1"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    ranking = db.scalar(select(Ranking).where(Ranking.assignment_id == aid))
    assert ranking is not None and ranking.strength == 1
    shown = ranking.shown_order
    assert ranking.ranks == {str(shown[0]): 1, str(shown[1]): 2}
