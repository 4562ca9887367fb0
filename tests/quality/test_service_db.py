"""Quality from the database: loading rankings as records, AI exclusion, the leaderboard's model names,
reward-model accuracy, trust weights flowing into rankings, comparisons, the export and the RM training
input, and the consensus export rows. Runs on SQLite and Postgres."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import service as auth
from app.exports import service as exports
from app.models import Comparison, Completion, ModelVersion, Prompt, Ranking
from app.quality import queries, service, weights
from app.registry import datasets
from tests.factories import make_user
from tests.quality.db_helpers import by_id, by_id_reversed, rank_all, seeded_project


def _ai_user(db: Session) -> object:
    return auth.create_user(db, "judge@example.org", "annotator", is_ai=True).user


def test_records_loaded_and_ai_kept_out_of_agreement(db: Session, dialect: str) -> None:
    assert dialect in ("sqlite", "postgresql")
    project = seeded_project(db, prompts=3, k=4, n=3)
    h1, h2, ai = make_user(db), make_user(db), _ai_user(db)
    db.commit()
    assert rank_all(db, project, [h1, h2, ai], [by_id, by_id, by_id_reversed]) == 9

    records = queries.load_records(db, project.id)
    assert len(records) == 9
    assert sum(r.is_ai for r in records) == 3
    first = records[0]
    assert set(first.shown_order) == set(first.ranks)
    assert first.lengths and all(n == 5 for n in first.lengths.values())  # "Answer i to prompt n"
    assert first.model_of and set(first.model_of.values()) == {"m0", "m1", "m2", "m3"}
    sources = set(db.scalars(select(Ranking.source).where(Ranking.annotator_id == ai.id)))  # type: ignore[attr-defined]
    assert sources == {"ai"}

    data = service.get_quality(db, project, fresh=True).to_dict()
    # The two humans agree perfectly; the reversed AI would pull every figure down if it were counted.
    assert data["agreement"]["pairwise_agreement"] == 1.0
    assert data["agreement"]["kendall_tau_b"] == 1.0
    assert data["agreement"]["krippendorff_alpha"] == 1.0
    assert data["agreement"]["n_prompts_multi"] == 3
    rows = {a["id"]: a for a in data["annotators"]}
    assert rows[ai.id]["is_ai"] is True and rows[h1.id]["is_ai"] is False  # type: ignore[attr-defined]
    assert rows[ai.id]["trust"] == 0.0 and rows[h1.id]["trust"] == 1.0  # type: ignore[attr-defined]
    # The leaderboard is human-only: m0 (lowest ids) is best, as both humans said.
    assert [r["name"] for r in data["leaderboard"]][0] == "m0"


def test_leaderboard_uses_policy_version_names_and_rm_accuracy(db: Session) -> None:
    project = seeded_project(db, prompts=4, k=3, n=2)
    policy = ModelVersion(project_id=project.id, kind="policy", name="policy-v1", base_model="tiny", status="active")
    rm_old = ModelVersion(project_id=project.id, kind="reward", name="rm-v1", base_model="tiny", status="candidate",
                          metrics={"heldout_accuracy": 0.61})
    rm_new = ModelVersion(project_id=project.id, kind="reward", name="rm-v2", base_model="tiny", status="active",
                          metrics={"heldout_accuracy": 0.74, "accuracy": 0.9})
    db.add_all([policy, rm_old, rm_new])
    db.flush()
    # The first completion of every prompt was sampled by the policy (and has no uploaded model name).
    for prompt_id in db.scalars(select(Prompt.id).where(Prompt.project_id == project.id)):
        first = db.scalars(select(Completion).where(Completion.prompt_id == prompt_id).order_by(Completion.id)).first()
        assert first is not None
        first.model_version_id, first.model_name = policy.id, None
    h1, h2 = make_user(db), make_user(db)
    db.commit()
    rank_all(db, project, [h1, h2], by_id)

    data = service.get_quality(db, project, fresh=True).to_dict()
    names = [r["name"] for r in data["leaderboard"]]
    assert names == ["policy-v1", "m1", "m2"]
    top = data["leaderboard"][0]
    assert top["ci_low"] - 1e-6 <= top["score"] <= top["ci_high"] + 1e-6
    assert [(r["name"], r["heldout_accuracy"]) for r in data["reward_models"]] == [("rm-v1", 0.61), ("rm-v2", 0.74)]


def test_trust_weights_reach_rankings_comparisons_export_and_training_input(db: Session, clean_engine: object) -> None:
    project = seeded_project(db, prompts=4, k=4, n=4)
    good1, good2, good3, bad = (make_user(db) for _ in range(4))
    db.commit()
    rank_all(db, project, [good1, good2, good3, bad], [by_id, by_id, by_id, by_id_reversed])

    result = weights.recompute_trust_weights(db, project)
    db.commit()
    assert result.rankings == 16 and result.changed == 16

    stored = {r.id: (r.annotator_id, r.weight) for r in db.scalars(select(Ranking).where(Ranking.project_id == project.id))}
    w_good = {w for a, w in stored.values() if a == good1.id}
    w_bad = {w for a, w in stored.values() if a == bad.id}
    assert len(w_good) == 1 and len(w_bad) == 1
    assert w_bad.pop() == 0.1  # the floor: always against the others
    assert 0.9 < w_good.pop() <= 1.0
    for c in db.scalars(select(Comparison).where(Comparison.project_id == project.id)):
        assert c.weight == stored[c.ranking_id][1]

    # The RM training input reads rankings.weight per group.
    watermark = max(c for c in db.scalars(select(Comparison.id)))
    snapshot = datasets.load_snapshot(db, project.id, watermark)
    group_weights = {g["group_id"]: g["weight"] for g in snapshot.groups}
    for rid, (_a, w) in stored.items():
        assert group_weights[f"ranking-{rid}"] == w

    # The pairs export's weight column carries the comparisons' weights.
    body = b"".join(exports.stream_export(clean_engine, project.id, "pairs", "csv"))  # type: ignore[arg-type]
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows and {float(r["weight"]) for r in rows} == {stored[int(r["group_id"])][1] for r in rows}
    assert {round(float(r["weight"]), 6) for r in rows} == {0.1, round(next(iter(w for a, w in stored.values()
                                                                                   if a == good1.id)), 6)}
    # Recomputing with nothing new changes nothing.
    assert weights.recompute_trust_weights(db, project).changed == 0


def test_consensus_export_rows(db: Session, clean_engine: object) -> None:
    project = seeded_project(db, prompts=2, k=3, n=3)
    users = [make_user(db) for _ in range(3)]
    db.commit()
    rank_all(db, project, users, [by_id, by_id, by_id_reversed])
    rows = list(service.consensus_export_rows(db, project))
    assert len(rows) == 2
    for row in rows:
        assert row["n_rankings"] == 3
        assert row["completion_ids"] == sorted(row["completion_ids"])  # two of three put lower ids first
        assert row["consensus_ranks"] == [1, 2, 3]
        assert row["bt_scores"] == sorted(row["bt_scores"], reverse=True)
        assert row["completions"][0].startswith("Answer 0")
    body = b"".join(exports.stream_export(clean_engine, project.id, "consensus", "jsonl"))  # type: ignore[arg-type]
    assert len(body.decode().strip().splitlines()) == 2


def test_cache_reuses_until_inputs_change(db: Session) -> None:
    project = seeded_project(db, prompts=2, k=3, n=2)
    a, b = make_user(db), make_user(db)
    db.commit()
    rank_all(db, project, [a], by_id)
    first = service.get_quality(db, project)
    assert service.get_quality(db, project) is first
    rank_all(db, project, [b], by_id)
    second = service.get_quality(db, project)
    assert second is not first and second.report.agreement.n_prompts_multi == 2
