"""Registry rules and lineage on SQLite and Postgres: base versions, promotion decisions, promote/rollback,
lineage queries in both directions, and the training snapshot read up to a watermark."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.models import Comparison, ModelVersion, Ranking
from app.registry import datasets
from app.registry import service as registry
from tests.factories import make_project, make_prompt


def test_reward_and_policy_rules() -> None:
    assert registry.reward_decision(0.70, 0.705, 0.01).promoted
    worse = registry.reward_decision(0.60, 0.70, 0.01)
    assert not worse.promoted and "worse" in worse.reason
    assert registry.reward_decision(0.6, None, 0.01).promoted
    assert not registry.reward_decision(None, 0.7, 0.01).promoted
    assert registry.policy_decision(0.1, 0.3, 2.0, 5.0).promoted
    assert "exceeds" in registry.policy_decision(0.1, 0.3, 6.0, 5.0).reason
    assert "did not improve" in registry.policy_decision(0.3, 0.3, 1.0, 5.0).reason
    assert not registry.policy_decision(None, 0.3, 1.0, 5.0).promoted
    vetoed = registry.policy_decision(0.1, 0.3, 2.0, 5.0, {"reward-v3": (0.5, 0.4)})
    assert not vetoed.promoted and "fell under reward-v3" in vetoed.reason and "0.5000 → 0.4000" in vetoed.reason
    agreed = registry.policy_decision(0.1, 0.3, 2.0, 5.0, {"reward-v3": (0.5, 0.6)})
    assert agreed.promoted and "also higher under reward-v3" in agreed.reason


def test_base_version_promote_and_rollback(db: Session) -> None:
    bare = make_project(db)
    assert registry.ensure_base_version(db, bare, "policy") is None
    project = make_project(db, settings={"training": {"policy_model": "/models/p", "reward_model": "/models/r"}})
    v0 = registry.ensure_base_version(db, project, "reward")
    assert v0 is not None and v0.name == "reward-v0" and v0.status == "active" and v0.checkpoint_path == "/models/r"
    assert registry.ensure_base_version(db, project, "reward").id == v0.id  # type: ignore[union-attr]
    v1 = registry.start_version(db, project, "reward", job_id=_job(db, project.id), parent=v0, base_model="/models/r",
                                training_config={}, data_watermark=5)
    assert v1.name == "reward-v1" and v1.status == "training"
    with pytest.raises(registry.RegistryError, match="no finished checkpoint"):
        registry.promote(db, v1, "too early")
    registry.record_training(db, v1, checkpoint_path="/ckpt/1", metrics={"loss": float("nan"), "acc": 0.7})
    assert v1.status == "candidate" and v1.metrics == {"loss": None, "acc": 0.7}
    registry.apply_decision(db, v1, registry.Decision(True, "better"))
    db.commit()
    assert v1.status == "active" and v0.status == "candidate" and "superseded by reward-v1" in v0.status_reason
    back = registry.rollback(db, project.id, "reward", by="admin@example.org")
    assert back.id == v0.id and v0.status == "active"
    assert v1.status == "rejected" and "rolled back to reward-v0" in v1.status_reason
    with pytest.raises(registry.RegistryError, match="no earlier reward version"):
        registry.rollback(db, project.id, "reward")  # v1 was rejected by the rollback: not a target


def _job(db: Session, project_id: int) -> int:
    from app.jobs import queue

    return queue.enqueue(db, "train_reward_model", project_id)[0].id


def _rank(db: Session, project_id: int, prompt_id: int, completion_ids: list[int], ranks: list[int],
          source: str = "human", client_info: dict[str, object] | None = None) -> list[int]:
    ranking = Ranking(project_id=project_id, prompt_id=prompt_id, shown_order=completion_ids, weight=0.5,
                      ranks={str(c): r for c, r in zip(completion_ids, ranks, strict=True)}, source=source,
                      client_info=client_info or {})
    db.add(ranking)
    db.flush()
    ids = []
    for i, a in enumerate(completion_ids):
        for j in range(i + 1, len(completion_ids)):
            b = completion_ids[j]
            tie = ranks[i] == ranks[j]
            w, lo = (a, b) if ranks[i] <= ranks[j] else (b, a)
            row = Comparison(project_id=project_id, prompt_id=prompt_id, ranking_id=ranking.id, winner_id=w,
                             loser_id=lo, is_tie=tie)
            db.add(row)
            db.flush()
            ids.append(row.id)
    return ids


def test_snapshot_lineage_and_watermark(db: Session) -> None:
    project = make_project(db)
    p1, p2 = make_prompt(db, project, 3), make_prompt(db, project, 2)
    c1 = [c.id for c in db.query(ModelVersion).session.scalars(_completions(p1.id))]
    c2 = [c.id for c in db.scalars(_completions(p2.id))]
    first = _rank(db, project.id, p1.id, c1, [1, 1, 2])  # one tied pair
    loose = Comparison(project_id=project.id, prompt_id=p2.id, winner_id=c2[1], loser_id=c2[0], source="imported")
    db.add(loose)
    db.flush()
    watermark = loose.id
    later = _rank(db, project.id, p2.id, c2, [2, 1])
    snap = datasets.load_snapshot(db, project.id, watermark)
    non_tie = [cid for cid in first if not db.get(Comparison, cid).is_tie]  # type: ignore[union-attr]
    assert snap.comparison_ids == sorted(non_tie + [loose.id]) and not set(later) & set(snap.comparison_ids)
    assert [g["ranks"] for g in snap.groups] == [[1, 1, 2], [1, 2]]
    assert snap.groups[0]["weight"] == 0.5 and snap.groups[1]["completions"][0] == "Answer 1 to prompt " + \
        p2.external_id[1:]
    assert datasets.load_snapshot(db, project.id, watermark).snapshot_hash == snap.snapshot_hash
    assert datasets.load_snapshot(db, project.id, later[-1]).snapshot_hash != snap.snapshot_hash

    version = ModelVersion(project_id=project.id, kind="reward", name="reward-v1", base_model="b", status="training")
    db.add(version)
    db.flush()
    registry.record_training(db, version, checkpoint_path="/x", metrics={}, comparison_ids=snap.comparison_ids)
    db.commit()
    assert registry.lineage(db, version.id) == snap.comparison_ids
    assert [v.id for v in registry.trained_by(db, loose.id)] == [version.id]
    assert registry.trained_by(db, later[0]) == []


def test_snapshot_ai_rankings_policy(db: Session) -> None:
    """Default: human + imported only; "llm-judge" adds LLM-judge AI rankings; reward-model ones never train."""
    project = make_project(db)
    prompts = [make_prompt(db, project, 2) for _ in range(5)]
    cids = [[c.id for c in db.scalars(_completions(p.id))] for p in prompts]
    human = _rank(db, project.id, prompts[0].id, cids[0], [1, 2])
    imported = _rank(db, project.id, prompts[1].id, cids[1], [2, 1], source="imported")
    judge = _rank(db, project.id, prompts[2].id, cids[2], [1, 2], source="ai",
                  client_info={"via": "ai-annotate", "ranker": "chat", "model": "judge-1"})
    by_rm = _rank(db, project.id, prompts[3].id, cids[3], [1, 2], source="ai",
                  client_info={"via": "ai-annotate", "ranker": "reward-model"})
    loose = Comparison(project_id=project.id, prompt_id=prompts[4].id, winner_id=cids[4][0], loser_id=cids[4][1],
                       source="imported")
    db.add(loose)
    db.flush()
    human_g, imported_g, judge_g, rm_g = (_group_of(db, ids) for ids in (human, imported, judge, by_rm))

    default = datasets.load_snapshot(db, project.id, loose.id)
    assert default.comparison_ids == sorted(human + imported + [loose.id])
    assert [g["group_id"] for g in default.groups] == [human_g, imported_g, f"comparison-{loose.id}"]
    assert default.ai_rankings_left_out == 2
    assert datasets.load_snapshot(db, project.id, loose.id, "exclude").snapshot_hash == default.snapshot_hash

    opted = datasets.load_snapshot(db, project.id, loose.id, "llm-judge")
    assert opted.comparison_ids == sorted(human + imported + judge + [loose.id])
    assert [g["group_id"] for g in opted.groups] == [human_g, imported_g, judge_g, f"comparison-{loose.id}"]
    assert rm_g not in {g["group_id"] for g in opted.groups} and opted.ai_rankings_left_out == 1
    assert opted.snapshot_hash != default.snapshot_hash
    assert datasets.load_snapshot(db, project.id, loose.id, "llm-judge").snapshot_hash == opted.snapshot_hash


def _group_of(db: Session, comparison_ids: list[int]) -> str:
    """The snapshot group id of the ranking the comparisons came from."""
    return f"ranking-{db.get(Comparison, comparison_ids[0]).ranking_id}"  # type: ignore[union-attr]


def _completions(prompt_id: int):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from app.models import Completion

    return select(Completion).where(Completion.prompt_id == prompt_id).order_by(Completion.position)


def test_settled_watermark_waits_for_uncommitted_submissions(db: Session, clean_engine: Engine,
                                                             dialect: str) -> None:
    """A comparison inserted (id allocated) but not yet committed must end up at or below the watermark."""
    if dialect != "postgresql":
        pytest.skip("SQLite commits one write transaction at a time, so its ids cannot commit out of order")
    project = make_project(db)
    prompt = make_prompt(db, project, 2)
    winner, loser = list(db.scalars(_completions(prompt.id)))
    db.commit()
    writer = Session(clean_engine)
    pending = Comparison(project_id=project.id, prompt_id=prompt.id, winner_id=winner.id, loser_id=loser.id,
                         source="imported")
    writer.add(pending)
    writer.flush()  # the id is allocated; the submission has not committed
    result: list[int] = []

    def take() -> None:
        with Session(clean_engine) as reader:
            result.append(registry.settled_watermark(reader, project.id))
            reader.commit()

    taker = threading.Thread(target=take)
    try:
        taker.start()
        taker.join(timeout=1.0)
        assert taker.is_alive() and not result, "the watermark must wait for the open submission"
        writer.commit()
        taker.join(timeout=30)
        assert result == [pending.id]
    finally:
        writer.rollback()
        writer.close()
        taker.join(timeout=30)


def test_fresher_reward_version(db: Session) -> None:
    from app.registry import queries

    project = make_project(db)

    def version(name: str, status: str, watermark: int | None, path: str | None = "/ckpt") -> ModelVersion:
        row = ModelVersion(project_id=project.id, kind="reward", name=name, base_model="b", status=status,
                           checkpoint_path=path, data_watermark=watermark)
        db.add(row)
        db.flush()
        return row

    active = version("reward-v1", "active", 10)
    assert queries.fresher_reward_version(db, project.id, active) is None
    version("reward-v0", "candidate", None)  # older data: not fresher
    version("reward-v2", "rejected", 20, path=None)  # never finished: no checkpoint to ask
    fresher = version("reward-v3", "rejected", 30)
    version("reward-v4", "training", 40)  # still training
    assert queries.fresher_reward_version(db, project.id, active) == fresher
    newest = version("reward-v5", "candidate", 50)
    assert queries.fresher_reward_version(db, project.id, active) == newest
