"""Stored reward-model scores: active selection ordering the real claim, the RM suggestion on the task and
`suggestion_shown` on the ranking, the AI annotator (RM path, through the labeling service), and the chat
ranker's request and defensive parsing (no network: httpx's MockTransport stands in for the endpoint)."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import queue
from app.labeling import service as labeling
from app.loop import chain
from app.models import Completion, ModelVersion, Project, Prompt, Ranking, Slot
from app.quality import scoring, service
from app.quality.ai_annotator import ChatRanker, TaskView, ai_user, annotate, parse_order, rm_ranker
from tests.factories import make_user
from tests.quality.db_helpers import by_id, rank_next, seeded_project


def _active_rm(db: Session, project: Project) -> ModelVersion:
    rm = ModelVersion(project_id=project.id, kind="reward", name="rm-v1", base_model="tiny", status="active",
                      checkpoint_path="/nonexistent", metrics={"heldout_accuracy": 0.7})
    db.add(rm)
    db.flush()
    return rm


def _scores(db: Session, project: Project, gaps: dict[int, float]) -> dict[int, float]:
    """Scores 0, gap, 2*gap, ... for the completions of each prompt (by index in `gaps`' order)."""
    out: dict[int, float] = {}
    prompt_ids = list(db.scalars(select(Prompt.id).where(Prompt.project_id == project.id).order_by(Prompt.id)))
    for index, pid in enumerate(prompt_ids):
        comps = db.scalars(select(Completion.id).where(Completion.prompt_id == pid).order_by(Completion.id)).all()
        for j, cid in enumerate(comps):
            out[cid] = -j * gaps.get(index, 5.0)  # lower id = higher reward
    return out


def test_active_selection_orders_the_claim_by_uncertainty(db: Session) -> None:
    project = seeded_project(db, prompts=5, k=3, n=1, quality={"active_selection": True})
    rm = _active_rm(db, project)
    # Prompt index 3 has near-equal rewards (most uncertain), then 1; the rest are clear-cut.
    result = scoring.store_rm_scores(db, project, rm.id, _scores(db, project, {3: 0.01, 1: 0.5}))
    db.commit()
    assert result.completions == 15 and result.priorities_set == 5
    prompt_ids = list(db.scalars(select(Prompt.id).where(Prompt.project_id == project.id).order_by(Prompt.id)))
    priority = dict(db.execute(select(Prompt.id, Prompt.priority).where(Prompt.project_id == project.id)).all())
    slot_priority = dict(db.execute(select(Slot.prompt_id, Slot.priority)).all())
    assert priority == slot_priority
    assert max(priority, key=priority.__getitem__) == prompt_ids[3]

    user = make_user(db)
    db.commit()
    claimed = [rank_next(db, project, user, by_id)["prompt_id"] for _ in range(2)]  # type: ignore[index]
    assert claimed == [prompt_ids[3], prompt_ids[1]]
    # Scores are stored for the suggestion and the AI annotator either way.
    metas = db.scalars(select(Completion.meta).where(Completion.prompt_id == prompt_ids[0])).all()
    assert all(m["rm_score_version"] == rm.id and isinstance(m["rm_score"], float) for m in metas)


def test_without_active_selection_priorities_are_left_alone(db: Session) -> None:
    project = seeded_project(db, prompts=3, k=3, n=1)
    rm = _active_rm(db, project)
    assert scoring.store_rm_scores(db, project, rm.id, _scores(db, project, {0: 0.01})).priorities_set == 0
    assert set(db.scalars(select(Slot.priority))) == {0.0}


def test_rm_suggestion_is_shown_and_recorded(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=4, n=1, quality={"show_rm_suggestion": True})
    rm = _active_rm(db, project)
    scoring.store_rm_scores(db, project, rm.id, _scores(db, project, {}))
    user = make_user(db)
    db.commit()
    task = labeling.next_task(db, project, user)
    assert task is not None
    suggestion = task.assignment.suggestion
    assert suggestion is not None
    shown = task.assignment.shown_completion_ids
    best_first = sorted(shown)  # lower id = higher reward
    assert suggestion["order"] == best_first
    assert suggestion["text"] == " > ".join("ABCD"[shown.index(c)] for c in best_first)
    db.commit()
    rank_next(db, project, user, by_id)  # submits the live task
    assert db.scalar(select(Ranking.suggestion_shown)) is True


def test_no_suggestion_when_the_setting_is_off(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3, n=1)
    rm = _active_rm(db, project)
    scoring.store_rm_scores(db, project, rm.id, _scores(db, project, {}))
    user = make_user(db)
    db.commit()
    rank_next(db, project, user, by_id)
    assert db.scalar(select(Ranking.suggestion_shown)) is False


def test_score_prompts_is_queued_after_a_promoted_reward_model(db: Session) -> None:
    project = seeded_project(db, prompts=1, k=3, n=1, quality={"active_selection": True})
    job, _ = queue.enqueue(db, "train_reward_model", project.id, {})
    job.result = {"status": "active", "version_id": 7}
    db.flush()
    chain.after_success(db, job)
    queued = [j for j in queue.queries.active_jobs_of(db, project.id) if j.kind == "score_prompts"]
    assert len(queued) == 1 and queued[0].payload["version_id"] == 7 and queued[0].parent_id == job.id


def test_ai_annotator_ranks_by_rm_scores_and_stays_out_of_agreement(db: Session, clean_engine: object) -> None:
    project = seeded_project(db, prompts=3, k=3, n=2)
    rm = _active_rm(db, project)
    scoring.store_rm_scores(db, project, rm.id, _scores(db, project, {}))
    human = make_user(db)
    ai = ai_user(db, "reward-model")
    assert ai_user(db, "reward-model").id == ai.id and ai.is_ai
    db.commit()
    for _ in range(3):
        rank_next(db, project, human, lambda shown: sorted(shown, reverse=True))
    result = annotate(sessionmaker(bind=clean_engine), project.id, ai.id, rm_ranker, max_tasks=5)  # type: ignore[call-overload]
    assert result.submitted == 3 and result.skipped == 0
    rankings = db.scalars(select(Ranking).where(Ranking.annotator_id == ai.id)).all()
    assert {r.source for r in rankings} == {"ai"}
    assert all(r.client_info == {"via": "ai-annotate", "ranker": "reward-model"} for r in rankings)
    for r in rankings:
        assert sorted(r.ranks, key=r.ranks.__getitem__) == sorted(r.ranks, key=int)  # lower id = higher reward
    data = service.get_quality(db, project, fresh=True).to_dict()
    # The human and the AI disagree on everything, yet no human pair exists: no agreement figure at all.
    assert data["agreement"]["n_prompts_multi"] == 0 and data["agreement"]["pairwise_agreement"] is None
    assert next(a for a in data["annotators"] if a["id"] == ai.id)["is_ai"] is True


def test_ai_annotator_with_a_chat_ranker_records_the_judge(db: Session, clean_engine: object) -> None:
    project = seeded_project(db, prompts=2, k=3, n=1)
    ai = ai_user(db, "judge-1")
    db.commit()

    def endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"content": "C > A > B"}}]})

    ranker = ChatRanker("http://judge.invalid/v1", "judge-1", client=httpx.Client(transport=httpx.MockTransport(endpoint)))
    result = annotate(sessionmaker(bind=clean_engine), project.id, ai.id, ranker, max_tasks=5)  # type: ignore[call-overload]
    assert result.submitted == 2 and result.skipped == 0
    rankings = db.scalars(select(Ranking).where(Ranking.id.in_(result.ranking_ids))).all()
    assert len(rankings) == 2 and {r.source for r in rankings} == {"ai"}
    assert all(r.client_info == {"via": "ai-annotate", "ranker": "chat", "model": "judge-1"} for r in rankings)


def test_rm_ranker_skips_tasks_without_scores(db: Session, clean_engine: object) -> None:
    project = seeded_project(db, prompts=2, k=3, n=1)
    ai = ai_user(db, "judge")
    db.commit()
    result = annotate(sessionmaker(bind=clean_engine), project.id, ai.id, rm_ranker, max_tasks=5)  # type: ignore[call-overload]
    assert result.submitted == 0 and result.skipped == 2


def test_parse_order_is_defensive() -> None:
    letters = ["A", "B", "C"]
    assert parse_order("B > A > C", letters) == {"B": 1, "A": 2, "C": 3}
    assert parse_order("I think b>c=a. Final answer: C > A = B", letters) == {"C": 1, "A": 2, "B": 2}
    assert parse_order("Ranking: B, C, A", letters) == {"B": 1, "C": 2, "A": 3}
    assert parse_order("B > A", letters) is None  # C missing
    assert parse_order("B > A > A > C", letters) is None  # A twice
    assert parse_order("no idea", letters) is None
    assert parse_order("B > A > D > C", letters) is None  # D was not shown


def test_chat_ranker_builds_the_request_and_reads_the_reply() -> None:
    seen: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"choices": [{"message": {"content": "Best first: C > A > B"}}]})

    view = TaskView(9, "What is 2+2?", ["A", "B", "C"], [11, 12, 13], ["4", "five", "four"], [None] * 3)
    ranker = ChatRanker("http://judge.invalid/v1/", "judge-1", api_key="k",
                        client=httpx.Client(transport=httpx.MockTransport(endpoint)))
    assert ranker(view) == {13: 1, 11: 2, 12: 3}
    request = seen[0]
    assert str(request.url) == "http://judge.invalid/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k"
    body = json.loads(request.content)
    assert body["model"] == "judge-1" and "Answer C:\nfour" in body["messages"][1]["content"]

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": []})

    bad = ChatRanker("http://judge.invalid/v1", "judge-1", client=httpx.Client(transport=httpx.MockTransport(broken)))
    assert bad(view) is None


def test_an_ensemble_orders_by_its_disagreement_and_keeps_member_rewards(db: Session) -> None:
    project = seeded_project(db, prompts=3, k=3, n=1, quality={"active_selection": True})
    rm = _active_rm(db, project)
    scores = _scores(db, project, {0: 0.01, 1: 2.0, 2: 2.0})  # by the mean, prompt 0 is the uncertain one
    prompt_ids = list(db.scalars(select(Prompt.id).where(Prompt.project_id == project.id).order_by(Prompt.id)))
    comps = {pid: list(db.scalars(select(Completion.id).where(Completion.prompt_id == pid).order_by(Completion.id)))
             for pid in prompt_ids}
    members: dict[int, list[float]] = {}
    for pid in prompt_ids:
        for j, cid in enumerate(comps[pid]):
            members[cid] = [-4.0 * j, -4.0 * j, -4.0 * j]  # members agree and are sure...
    for j, cid in enumerate(comps[prompt_ids[2]]):
        members[cid] = [-4.0 * j, 4.0 * j, -4.0 * j]  # ...except on prompt 2, where one member is sure of the opposite
    scoring.store_rm_scores(db, project, rm.id, scores, members)
    db.commit()
    priority = dict(db.execute(select(Prompt.id, Prompt.priority).where(Prompt.project_id == project.id)).all())
    assert max(priority, key=priority.__getitem__) == prompt_ids[2]
    assert priority[prompt_ids[0]] == pytest.approx(0.0, abs=1e-6)  # confident members, no disagreement
    meta = db.scalar(select(Completion.meta).where(Completion.id == comps[prompt_ids[2]][1]))
    assert meta["rm_members"] == [-4.0, 4.0, -4.0] and meta["rm_score"] == pytest.approx(-2.0)

    # A later single-head model's scores replace the members, and priorities go back to the margin.
    scoring.store_rm_scores(db, project, rm.id, scores)
    db.commit()
    priority = dict(db.execute(select(Prompt.id, Prompt.priority).where(Prompt.project_id == project.id)).all())
    assert max(priority, key=priority.__getitem__) == prompt_ids[0]
    assert "rm_members" not in db.scalar(select(Completion.meta).where(Completion.id == comps[prompt_ids[2]][1]))
