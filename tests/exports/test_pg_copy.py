"""The Postgres COPY fast path of the pairs export yields exactly the rows of the generic path: the same JSON
lines, and a byte-identical Parquet file (also across row groups, conversational prompts and empty exports)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.orm import Session

from app.exports.rows import BUILDERS
from app.exports.schemas import ExportFilters, ExportOptions
from app.exports.service import export_to_sink
from app.imports.schemas import ImportOptions
from app.imports.service import run_import
from app.jobs import queue
from app.models import Comparison, Completion, ModelVersion, Project, Prompt, Ranking
from app.registry import datasets
from app.registry import service as registry
from tests.factories import make_project, make_prompt, make_user

RECORDS = [
    {"prompt": "Plain \\ backslash,\ttab and \"quotes\"\nnewline", "chosen": "ok \\n literal", "rejected": "=1+1"},
    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ☃"}],
     "chosen": [{"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "assistant", "content": "Go away."}]},
    {"prompt": "Another\r\nprompt", "chosen": "\u2028 line sep", "rejected": "tab\there"},
]


def _lines(engine: Engine, project: Project, fast: bool, **kwargs: Any) -> list[dict[str, Any]]:
    options = ExportOptions(margin_column=kwargs.pop("margin", False))
    sink = io.BytesIO()
    rows = export_to_sink(engine, project.id, "pairs", "jsonl", sink, ExportFilters(**kwargs), options, fast=fast)
    parsed = [json.loads(line) for line in sink.getvalue().decode().split("\n") if line]
    assert len(parsed) == rows
    return parsed


def _parquet(engine: Engine, project: Project, fast: bool, **kwargs: Any) -> bytes:
    options = ExportOptions(margin_column=kwargs.pop("margin", False))
    sink = io.BytesIO()
    export_to_sink(engine, project.id, "pairs", "parquet", sink, ExportFilters(**kwargs), options, fast=fast)
    return sink.getvalue()


def test_fast_path_equals_generic_path(db: Session, clean_engine: Engine, dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("the COPY fast path is Postgres-only; SQLite always takes the generic path")
    project = make_project(db)
    annotator = make_user(db)
    data = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
    outcome = run_import(db, project, io.BytesIO(data), "pairs.jsonl", ImportOptions())
    assert outcome.ok, outcome
    db.execute(update(Comparison).where(Comparison.id == 1).values(weight=0.6125, annotator_id=annotator.id))
    # Model versions on some completions only (others stay null), with a name JSON must escape.
    version = ModelVersion(project_id=project.id, kind="policy", name='policy "v2" \\ ☃', base_model="tiny")
    db.add(version)
    db.flush()
    first = db.get_one(Comparison, 1)
    db.execute(update(Completion).where(Completion.id == first.winner_id).values(model_version_id=version.id))
    both = db.get_one(Comparison, 3)
    db.execute(update(Completion).where(Completion.id.in_([both.winner_id, both.loser_id]))
               .values(model_version_id=version.id))
    # Timestamps whose default text forms differ between Postgres and Python: a trailing zero and no fraction at all.
    for cid, moment in ((1, datetime(2026, 3, 1, 8, 31, 38, 669880, tzinfo=UTC)),
                        (2, datetime(2026, 3, 1, 8, 31, 39, tzinfo=UTC))):
        db.execute(update(Comparison).where(Comparison.id == cid).values(created_at=moment))
    # A reward model trained on two of the three comparisons (lineage recorded as a training job does).
    job = queue.enqueue(db, "train_reward_model", project.id)[0]
    reward = registry.start_version(db, project, "reward", job_id=job.id, parent=None, base_model="tiny",
                                    training_config={}, data_watermark=3)
    registry.record_training(db, reward, checkpoint_path="/ckpt", metrics={}, comparison_ids=[1, 3])
    db.commit()

    for kwargs in ({}, {"margin": True}, {"annotator_id": annotator.id}, {"since": datetime(2000, 1, 1, tzinfo=UTC)},
                   {"model_version_id": version.id}, {"trained_version_id": reward.id}):
        fast, generic = _lines(clean_engine, project, True, **kwargs), _lines(clean_engine, project, False, **kwargs)
        assert len(fast) == 3 or kwargs.get("annotator_id") or kwargs.get("model_version_id") \
            or kwargs.get("trained_version_id")
        assert fast == generic
        assert [list(row) for row in fast] == [list(row) for row in generic]  # same keys in the same order
        assert _parquet(clean_engine, project, True, **kwargs) == _parquet(clean_engine, project, False, **kwargs)
    rows = _lines(clean_engine, project, True)
    assert [(r["chosen_model_version_id"], r["rejected_model_version_id"]) for r in rows] == [
        (version.id, None), (None, None), (version.id, version.id)]
    assert rows[0]["chosen_model_version_name"] == 'policy "v2" \\ ☃' and rows[1]["chosen_model_version_name"] is None
    assert [r["comparison_id"] for r in _lines(clean_engine, project, True, model_version_id=version.id)] == [3]
    assert [r["comparison_id"] for r in _lines(clean_engine, project, True, trained_version_id=reward.id)] == [1, 3]
    completions = {cid: w for cid, w in db.execute(select(Comparison.id, Comparison.winner_id))}
    assert all(r["chosen_completion_id"] == completions[r["comparison_id"]] for r in rows)
    assert {type(row["weight"]) for row in rows} == {float}
    # Byte-identical text on both paths: fixed width, UTC, six fractional digits.
    assert [row["created_at"] for row in rows[:2]] == ["2026-03-01T08:31:38.669880+00:00",
                                                       "2026-03-01T08:31:39.000000+00:00"]


def test_fast_parquet_is_the_generic_file_across_row_groups(db: Session, clean_engine: Engine, dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("the COPY fast path is Postgres-only; SQLite always takes the generic path")
    project = make_project(db)
    assert _parquet(clean_engine, project, True) == _parquet(clean_engine, project, False)  # no rows: same schema
    prompts = [{"project_id": project.id, "external_id": f"p{n}", "text": f"Prompt {n} ☃", "content_hash": f"{n:064d}"}
               for n in range(2100)]
    db.execute(insert(Prompt), prompts)
    prompt_ids = list(db.scalars(select(Prompt.id).where(Prompt.project_id == project.id).order_by(Prompt.id)))
    db.execute(insert(Completion), [{"prompt_id": pid, "position": k, "text": f"Answer {k} to {pid}"}
                                    for pid in prompt_ids for k in range(4)])
    by_prompt: dict[int, list[int]] = {}
    for cid, pid in db.execute(select(Completion.id, Completion.prompt_id).order_by(Completion.id)):
        by_prompt.setdefault(pid, []).append(cid)
    # Every pair of four answers; some ties, so COPY's id-range chunks hold uneven numbers of rows.
    db.execute(insert(Comparison), [
        {"project_id": project.id, "prompt_id": pid, "winner_id": ids[a], "loser_id": ids[b], "winner_rank": a + 1,
         "loser_rank": b + 1, "rank_gap": b - a, "is_tie": (pid + a + b) % 7 == 0, "source": "imported",
         "weight": 1.0 + (pid % 3) / 4}
        for pid, ids in by_prompt.items() for a in range(4) for b in range(a + 1, 4)])
    db.commit()
    fast, generic = _parquet(clean_engine, project, True), _parquet(clean_engine, project, False)
    assert pq.ParquetFile(io.BytesIO(fast)).num_row_groups == 3  # 5,000 + 5,000 + the rest
    assert fast == generic
    assert _parquet(clean_engine, project, True, margin=True) == _parquet(clean_engine, project, False, margin=True)


def _kind_lines(engine: Engine, project: Project, kind: str, fast: bool, **kwargs: Any) -> list[dict[str, Any]]:
    sink = io.BytesIO()
    rows = export_to_sink(engine, project.id, kind, "jsonl", sink, ExportFilters(**kwargs), fast=fast)
    parsed = [json.loads(line) for line in sink.getvalue().decode().split("\n") if line]
    assert len(parsed) == rows
    return parsed


def _kind_parquet(engine: Engine, project: Project, kind: str, fast: bool, **kwargs: Any) -> bytes:
    sink = io.BytesIO()
    export_to_sink(engine, project.id, kind, "parquet", sink, ExportFilters(**kwargs), fast=fast)
    return sink.getvalue()


def test_fast_rankings_equal_the_generic_rankings(db: Session, clean_engine: Engine, dialect: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if dialect != "postgresql":
        pytest.skip("the COPY fast path is Postgres-only; SQLite always takes the generic path")
    project, annotator = make_project(db), make_user(db)
    version = ModelVersion(project_id=project.id, kind="policy", name="policy \"v1\" ☃", base_model="tiny")
    db.add(version)
    db.flush()
    rankings = []
    for n, (source, info) in enumerate((("human", {}), ("ai", {"ranker": datasets.LLM_JUDGE_RANKER, "model": "judge"}),
                                        ("imported", {"imported": {"tool": "argilla"}}), ("human", {}))):
        prompt = make_prompt(db, project, n_completions=3, text=f"Prompt {n}: \"quoted\" \\ ☃\n")
        ids = list(db.scalars(select(Completion.id).where(Completion.prompt_id == prompt.id).order_by(Completion.id)))
        if n in (0, 3):  # every completion of one version; prompt 3 only some of them
            db.execute(update(Completion).where(Completion.id.in_(ids if n == 0 else ids[:1]))
                       .values(model_version_id=version.id))
        ranking = Ranking(project_id=project.id, prompt_id=prompt.id, annotator_id=annotator.id if n != 1 else None,
                          ranks={str(ids[0]): 2, str(ids[1]): 1, str(ids[2]): 2} if n != 2 else {str(ids[0]): 1},
                          shown_order=[ids[2], ids[0], ids[1]], source=source, client_info=info,
                          flags={str(ids[2]): ["unsafe", "naïve ☃"], "a": 1.5} if n == 0 else {},
                          likert={"helpful": 4} if n else {}, rationale="because\t\"so\"" if n == 0 else "",
                          not_rankable=n == 2, wall_seconds=[12.5, 3.0, None, 1e-05][n], active_seconds=None,
                          weight=[1.0, 0.25, 2.0, 0.6125][n],
                          created_at=datetime(2026, 3, 1, 8, 31, 39 + n, 669880 if n % 2 else 0, tzinfo=UTC))
        db.add(ranking)
        db.flush()
        rankings.append(ranking)
        db.add(Comparison(project_id=project.id, prompt_id=prompt.id, ranking_id=ranking.id, winner_id=ids[1],
                          loser_id=ids[0], winner_rank=1, loser_rank=2, rank_gap=1))
    db.flush()
    db.execute(delete(Completion).where(Completion.id == rankings[3].shown_order[0]))  # a shown answer is gone
    job = queue.enqueue(db, "train_reward_model", project.id)[0]
    reward = registry.start_version(db, project, "reward", job_id=job.id, parent=None, base_model="tiny",
                                    training_config={}, data_watermark=None)
    first = db.scalars(select(Comparison.id).where(Comparison.ranking_id == rankings[0].id)).one()
    registry.record_training(db, reward, checkpoint_path="/ckpt", metrics={}, comparison_ids=[first])
    db.commit()

    cases: tuple[dict[str, Any], ...] = ({}, {"annotator_id": annotator.id}, {"humans_only": True},
                                         {"since": datetime(2026, 3, 1, 8, 31, 41, tzinfo=UTC)},
                                         {"model_version_id": version.id}, {"trained_version_id": reward.id})
    for chat in (False, True):
        if chat:  # one conversational prompt makes every prompt of the export a message list
            db.execute(update(Prompt).where(Prompt.id == rankings[1].prompt_id)
                       .values(messages=[{"role": "user", "content": "Hi ☃"}], system="Be brief."))
            db.commit()
        for kwargs in cases:
            fast = _kind_lines(clean_engine, project, "rankings", True, **kwargs)
            generic = _kind_lines(clean_engine, project, "rankings", False, **kwargs)
            assert fast == generic, kwargs
            assert [list(row) for row in fast] == [list(row) for row in generic]
            assert _kind_parquet(clean_engine, project, "rankings", True, **kwargs) \
                == _kind_parquet(clean_engine, project, "rankings", False, **kwargs), kwargs
        with monkeypatch.context() as patched:  # the fast path never builds a row in Python
            patched.setitem(BUILDERS, "rankings", None)
            rows = _kind_lines(clean_engine, project, "rankings", True)
            assert _kind_parquet(clean_engine, project, "rankings", True)
        assert [r["labeler"] for r in rows] == ["human", "llm-judge:judge", "imported:argilla", "human"]
        assert json.loads(rows[0]["flags"])["a"] == 1.5 and rows[1]["flags"] == "{}"
        assert [type(r["weight"]) for r in rows] == [float] * 4 and rows[2]["not_rankable"] is True
        assert len(rows[3]["completion_ids"]) == 2 and len(rows[3]["shown_order"]) == 3
        assert [r["ranking_id"] for r in _kind_lines(clean_engine, project, "rankings", True,
                                                     model_version_id=version.id)] == [rankings[0].id]
        assert [r["ranking_id"] for r in _kind_lines(clean_engine, project, "rankings", True,
                                                     trained_version_id=reward.id)] == [rankings[0].id]
